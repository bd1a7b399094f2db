// Package classify classifies unstructured text into a closed set of
// labels. This file and model.go are the embedded classifier: no model to
// download, trained on a classifier's labeled examples.
//
// Features are hashed word unigrams and bigrams and character n-grams
// (3 to 5, within words and across word boundaries), and the concepts
// each word can stand for (WordNet's synsets and their hypernyms, from the
// embedded lexicon), with sublinear TF-IDF weights, L2-normalized; the
// model is a multinomial logistic regression trained by SGD; confidence is
// calibrated by temperature scaling on a held-out slice of the examples,
// with each label's share of the examples taken out (logit adjustment), so
// that no label is favored for having been taught with more examples.
package classify

import (
	"math"

	"github.com/adaptflow/adaptflow/ml/classify/lexicon"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// featureBits sizes the hashed feature space (2^20 buckets).
const featureBits = 20

// tokens lower-cases text and splits it into words of letters and digits.
func tokens(text string) []string {
	return strings.FieldsFunc(strings.ToLower(text), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '\''
	})
}

const (
	fnvOffset = 2166136261
	fnvPrime  = 16777619
)

// hashOf is FNV-1a (32 bits) of kind followed by s, folded to featureBits.
func hashOf(kind byte, s string) uint32 {
	h := uint32(fnvOffset)
	h = (h ^ uint32(kind)) * fnvPrime
	for i := 0; i < len(s); i++ {
		h = (h ^ uint32(s[i])) * fnvPrime
	}
	return h & (1<<featureBits - 1)
}

// hashRunes is hashOf(kind, string(rs)) without building the string.
func hashRunes(kind byte, rs []rune) uint32 {
	h := uint32(fnvOffset)
	h = (h ^ uint32(kind)) * fnvPrime
	var buf [utf8.UTFMax]byte
	for _, r := range rs {
		if r < utf8.RuneSelf {
			h = (h ^ uint32(r)) * fnvPrime
			continue
		}
		n := utf8.EncodeRune(buf[:], r)
		for _, b := range buf[:n] {
			h = (h ^ uint32(b)) * fnvPrime
		}
	}
	return h & (1<<featureBits - 1)
}

// rawCounts are the hashed feature counts of a text.
func rawCounts(text string) map[uint32]float32 { return countsOf(tokens(text)) }

// conceptWeight is what each of a word's concepts counts for, against a
// word's 1: measured on BANKING77 with 10 examples per label (1 and 3 do
// less well); with every example the concepts change little.
const conceptWeight = 2

// modelCounts are the features of the embedded classifier: rawCounts and,
// unless opts.NoLexicon, the concepts each word can stand for (by
// WordNet), hashed, so that words of one meaning share features: "buy"
// learns from "purchase". The hashing embedding leaves them out: stored
// embeddings keep their meaning.
func modelCounts(text string, opts Options) map[uint32]float32 {
	toks := tokens(text)
	counts := countsOf(toks)
	if opts.NoLexicon {
		return counts
	}
	lex := lexicon.Default()
	var concepts []uint32
	for _, t := range toks {
		concepts = lex.Concepts(concepts[:0], t)
		for _, c := range concepts {
			counts[hashConcept(c)] += conceptWeight
		}
	}
	return counts
}

// hashConcept is the bucket of a lexicon concept.
func hashConcept(c uint32) uint32 {
	h := uint32(fnvOffset)
	h = (h ^ 'k') * fnvPrime
	for range 4 {
		h = (h ^ c&0xff) * fnvPrime
		c >>= 8
	}
	return h & (1<<featureBits - 1)
}

// countsOf are the hashed feature counts of a text's tokens.
func countsOf(toks []string) map[uint32]float32 {
	counts := make(map[uint32]float32, 16*len(toks)+4)
	var padded []rune
	for i, t := range toks {
		counts[hashOf('w', t)]++
		if i > 0 {
			counts[hashOf('b', toks[i-1]+" "+t)]++
		}
		padded = append(padded[:0], '<')
		padded = append(padded, []rune(t)...)
		padded = append(padded, '>')
		for n := 3; n <= 5; n++ {
			for j := 0; j+n <= len(padded); j++ {
				counts[hashRunes('c', padded[j:j+n])]++
			}
		}
	}
	// Character n-grams across word boundaries catch phrases ("top up").
	whole := []rune(" " + strings.Join(toks, " ") + " ")
	for n := 3; n <= 5; n++ {
		for j := 0; j+n <= len(whole); j++ {
			counts[hashRunes('x', whole[j:j+n])]++
		}
	}
	if len(toks) == 0 {
		counts[hashOf('e', "")] = 1
	}
	return counts
}

// vectorize weights counts by sublinear TF and idf, keeps the features of
// the vocabulary, and L2-normalizes (over the features kept).
func (m *Model) vectorize(counts map[uint32]float32) []row {
	out := make([]row, 0, len(counts))
	var norm float64
	for idx, c := range counts {
		r, ok := m.vocab[idx]
		if !ok {
			continue
		}
		v := (1 + float32(math.Log(float64(c)))) * m.idf[r]
		out = append(out, row{idx: r, val: v})
		norm += float64(v) * float64(v)
	}
	if norm > 0 {
		inv := float32(1 / math.Sqrt(norm))
		for i := range out {
			out[i].val *= inv
		}
	}
	slices.SortFunc(out, func(a, b row) int { return int(a.idx) - int(b.idx) })
	return out
}
