// Package classify classifies unstructured text into a closed set of
// labels. This file and model.go are the embedded classifier: no model to
// download, trained on a classifier's labeled examples.
//
// Features are hashed word unigrams and bigrams and character n-grams
// (3 to 5, within words and across word boundaries) with sublinear TF-IDF
// weights, L2-normalized; the
// model is a multinomial logistic regression trained by SGD; confidence is
// calibrated by temperature scaling on a held-out slice of the examples.
package classify

import (
	"hash/fnv"
	"math"
	"slices"
	"strings"
	"unicode"
)

// featureBits sizes the hashed feature space (2^20 buckets).
const featureBits = 20

// feature is one hashed feature and its weight.
type feature struct {
	idx uint32
	val float32
}

// tokens lower-cases text and splits it into words of letters and digits.
func tokens(text string) []string {
	return strings.FieldsFunc(strings.ToLower(text), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '\''
	})
}

func hashOf(kind byte, s string) uint32 {
	h := fnv.New32a()
	h.Write([]byte{kind})
	h.Write([]byte(s))
	return h.Sum32() & (1<<featureBits - 1)
}

// rawCounts are the hashed feature counts of a text.
func rawCounts(text string) map[uint32]float32 {
	toks := tokens(text)
	counts := make(map[uint32]float32, 16*len(toks)+4)
	for i, t := range toks {
		counts[hashOf('w', t)]++
		if i > 0 {
			counts[hashOf('b', toks[i-1]+" "+t)]++
		}
		padded := []rune("<" + t + ">")
		for n := 3; n <= 5; n++ {
			for j := 0; j+n <= len(padded); j++ {
				counts[hashOf('c', string(padded[j:j+n]))]++
			}
		}
	}
	// Character n-grams across word boundaries catch phrases ("top up").
	whole := []rune(" " + strings.Join(toks, " ") + " ")
	for n := 3; n <= 5; n++ {
		for j := 0; j+n <= len(whole); j++ {
			counts[hashOf('x', string(whole[j:j+n]))]++
		}
	}
	if len(toks) == 0 {
		counts[hashOf('e', "")] = 1
	}
	return counts
}

// vectorize weights counts by sublinear TF and idf, then L2-normalizes.
func vectorize(counts map[uint32]float32, idf func(uint32) float32) []feature {
	out := make([]feature, 0, len(counts))
	var norm float64
	for idx, c := range counts {
		v := (1 + float32(math.Log(float64(c)))) * idf(idx)
		out = append(out, feature{idx: idx, val: v})
		norm += float64(v) * float64(v)
	}
	if norm > 0 {
		inv := float32(1 / math.Sqrt(norm))
		for i := range out {
			out[i].val *= inv
		}
	}
	slices.SortFunc(out, func(a, b feature) int { return int(a.idx) - int(b.idx) })
	return out
}
