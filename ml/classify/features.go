// Package classify classifies unstructured text into a closed set of
// labels. This file, model.go and network.go are the embedded classifier:
// no model to download, trained on a classifier's labeled examples.
//
// Features are hashed word unigrams and bigrams and character n-grams
// (3 to 5, within words and across word boundaries), and the concepts
// each word can stand for (WordNet's synsets and their hypernyms, from the
// embedded lexicon), with sublinear TF-IDF weights, L2-normalized; the
// model is a multinomial logistic regression trained by SGD, with most of
// an example's features dropped out at each pass (Options.Dropout), and,
// from 200 examples on, a network of one hidden layer on the same
// features trained beside it, whose logits it adds (Options.Hidden);
// confidence is calibrated by temperature scaling on a held-out slice of
// the examples (with few examples, on every one, cross-validated), with
// each label's share of the examples taken out (logit adjustment), so
// that no label is favored for having been taught with more examples.
package classify

import (
	"math"
	"math/bits"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/adaptflow/adaptflow/ml/classify/lexicon"
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

// bag is a text's hashed features with their counts, in the order they
// were first met (so that a text's features, and a vocabulary built from
// texts, come out the same each time without sorting them), counted in an
// open-addressing table: a text's hundreds of n-grams cost no map.
type bag struct {
	keys   []uint32
	counts []float32
	slots  []int32 // index+1 in keys of the feature hashed there; 0 free
	shift  uint
}

func newBag(n int) *bag {
	b := &bag{keys: make([]uint32, 0, n), counts: make([]float32, 0, n)}
	b.rehash(n)
	return b
}

// rehash sizes the table for n features and places those counted.
func (b *bag) rehash(n int) {
	size := 16
	for size < 2*n {
		size *= 2
	}
	b.slots = make([]int32, size)
	b.shift = uint(32 - bits.TrailingZeros(uint(size)))
	for i, k := range b.keys {
		b.slots[b.slotOf(k)] = int32(i + 1)
	}
}

// slotOf is the free slot for k, or k's own.
func (b *bag) slotOf(k uint32) int {
	mask := len(b.slots) - 1
	s := int((k * 0x9e3779b1) >> b.shift)
	for {
		i := b.slots[s]
		if i == 0 || b.keys[i-1] == k {
			return s
		}
		s = (s + 1) & mask
	}
}

func (b *bag) add(k uint32, w float32) {
	s := b.slotOf(k)
	if i := b.slots[s]; i != 0 {
		b.counts[i-1] += w
		return
	}
	b.keys = append(b.keys, k)
	b.counts = append(b.counts, w)
	b.slots[s] = int32(len(b.keys))
	if 2*len(b.keys) > len(b.slots) {
		b.rehash(len(b.keys))
	}
}

// rawCounts are the hashed feature counts of a text.
func rawCounts(text string) *bag { return countsOf(tokens(text)) }

// conceptWeight is what each of a word's concepts counts for, against a
// word's 1: measured on BANKING77 with 10 examples per label (1 and 3 do
// less well); with every example the concepts change little.
const conceptWeight = 2

// modelCounts are the features of the embedded classifier: rawCounts and,
// unless opts.NoLexicon, the concepts each word can stand for (by
// WordNet), hashed, so that words of one meaning share features: "buy"
// learns from "purchase". The hashing embedding leaves them out: stored
// embeddings keep their meaning.
func modelCounts(text string, opts Options) *bag {
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
			counts.add(hashConcept(c), conceptWeight)
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
func countsOf(toks []string) *bag {
	chars := 0
	for _, t := range toks {
		chars += len(t) + 1
	}
	counts := newBag(8*chars + 4)
	var padded []rune
	for i, t := range toks {
		counts.add(hashOf('w', t), 1)
		if i > 0 {
			counts.add(hashOf('b', toks[i-1]+" "+t), 1)
		}
		padded = append(padded[:0], '<')
		padded = append(padded, []rune(t)...)
		padded = append(padded, '>')
		for n := 3; n <= 5; n++ {
			for j := 0; j+n <= len(padded); j++ {
				counts.add(hashRunes('c', padded[j:j+n]), 1)
			}
		}
	}
	// Character n-grams across word boundaries catch phrases ("top up").
	whole := []rune(" " + strings.Join(toks, " ") + " ")
	for n := 3; n <= 5; n++ {
		for j := 0; j+n <= len(whole); j++ {
			counts.add(hashRunes('x', whole[j:j+n]), 1)
		}
	}
	if len(toks) == 0 {
		counts.add(hashOf('e', ""), 1)
	}
	return counts
}

// vectorize weights counts by sublinear TF and idf, keeps the features of
// the vocabulary, and L2-normalizes (over the features kept); the rows
// come in the order the features were met.
func (m *Model) vectorize(counts *bag) []row {
	out := make([]row, 0, len(counts.keys))
	var norm float64
	for i, idx := range counts.keys {
		r, ok := m.vocab[idx]
		if !ok {
			continue
		}
		v := (1 + float32(math.Log(float64(counts.counts[i])))) * m.idf[r]
		out = append(out, row{idx: r, val: v})
		norm += float64(v) * float64(v)
	}
	if norm > 0 {
		inv := float32(1 / math.Sqrt(norm))
		for i := range out {
			out[i].val *= inv
		}
	}
	return out
}
