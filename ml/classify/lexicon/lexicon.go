// Package lexicon tells which concepts an English word can stand for, from
// WordNet 3.0 (Princeton University; its license in LICENSE-WORDNET), so
// that a classifier taught "I want to purchase it" knows "buy" when it
// reads it: the embedded classifier adds a word's concepts to its
// features. It is a dictionary, not a trained model: the data is WordNet's
// own, reduced to one-word lemmas, the synsets of their most frequent
// senses and those synsets' hypernyms, and compressed (about 1 MB).
//
// wordnet.tsv.gz is made by Build from Debian's wordnet-base package:
//
//go:generate go run ./gen -wordnet /usr/share/wordnet -out wordnet.tsv.gz
package lexicon

import (
	"bufio"
	"bytes"
	"compress/gzip"
	_ "embed"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
)

//go:embed wordnet.tsv.gz
var embedded []byte

// Lexicon maps words to concepts. The zero value knows no word.
type Lexicon struct {
	// lemmas gives each lemma its index; spans[5*i : 5*i+5] are where
	// its concepts of each part of speech start in concepts, then where
	// they end. Flat: a map of strings to numbers and two arrays, not a
	// slice per lemma and part of speech.
	lemmas   map[string]int32
	spans    []uint32
	concepts []uint32
	// exceptions gives an inflected form its base per part of speech
	// ("" for none).
	exceptions map[string][4]string
}

// Default is the embedded lexicon, read at its first use (about 0.1 s).
var Default = sync.OnceValue(func() *Lexicon {
	l, err := Load(bytes.NewReader(embedded))
	if err != nil {
		panic(fmt.Sprintf("lexicon: the embedded wordnet.tsv.gz: %v", err)) // a broken build
	}
	return l
})

// Load reads a lexicon Build wrote.
func Load(r io.Reader) (*Lexicon, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, err
	}
	l := &Lexicon{exceptions: map[string][4]string{}}
	// The lemmas' names go to one string, the map's keys slices of it.
	var names strings.Builder
	var ends []int
	sc := bufio.NewScanner(zr)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 5 {
			return nil, fmt.Errorf("line %d: %d fields, want 5", n, len(f))
		}
		if word, ok := strings.CutPrefix(f[0], "~"); ok {
			var e [4]string
			for p, bases := range f[1:] {
				e[p], _, _ = strings.Cut(bases, ",") // Build kept only bases that are lemmas
			}
			l.exceptions[word] = e
			continue
		}
		for _, list := range f[1:] {
			l.spans = append(l.spans, uint32(len(l.concepts)))
			if list == "" {
				continue
			}
			for s := range strings.SplitSeq(list, ",") {
				id, err := strconv.ParseUint(s, 10, 32)
				if err != nil {
					return nil, fmt.Errorf("line %d: %w", n, err)
				}
				l.concepts = append(l.concepts, uint32(id))
			}
		}
		l.spans = append(l.spans, uint32(len(l.concepts)))
		names.WriteString(f[0])
		ends = append(ends, names.Len())
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	all := names.String()
	l.lemmas = make(map[string]int32, len(ends))
	start := 0
	for i, end := range ends {
		l.lemmas[all[start:end]] = int32(i)
		start = end
	}
	l.spans, l.concepts = slices.Clip(l.spans), slices.Clip(l.concepts)
	return l, nil
}

// Concepts appends to dst the concepts word (a lower-case token) can
// stand for (none for a function word: "is", "the", "can", "I"): per part of speech, those of its base form (WordNet's
// morphy: the word itself, an exception such as "paid" of "pay", or a
// regular ending taken off, "cards" of "card"), the first base form that
// is a lemma of that part of speech.
func (l *Lexicon) Concepts(dst []uint32, word string) []uint32 {
	if functionWords[word] {
		return dst
	}
	for p := range 4 {
		if i, ok := l.lemmaOf(word, p); ok {
			dst = append(dst, l.concepts[l.spans[5*int(i)+p]:l.spans[5*int(i)+p+1]]...)
		}
	}
	return dst
}

// has says whether the lemma numbered i is one of part of speech p.
func (l *Lexicon) has(i int32, p int) bool {
	return l.spans[5*int(i)+p] < l.spans[5*int(i)+p+1]
}

// endings are WordNet's detachment rules per part of speech: an ending,
// and what replaces it.
var endings = [4][][2]string{
	{{"s", ""}, {"ses", "s"}, {"xes", "x"}, {"zes", "z"}, {"ches", "ch"}, {"shes", "sh"}, {"men", "man"}, {"ies", "y"}},
	{{"s", ""}, {"ies", "y"}, {"es", "e"}, {"es", ""}, {"ed", "e"}, {"ed", ""}, {"ing", "e"}, {"ing", ""}},
	{{"er", ""}, {"est", ""}, {"er", "e"}, {"est", "e"}},
	nil,
}

// lemmaOf is the number of word's base form as a part of speech: the word
// itself, its exception, or the first regular ending taken off that leaves
// a lemma of it.
func (l *Lexicon) lemmaOf(word string, p int) (int32, bool) {
	if i, ok := l.lemmas[word]; ok && l.has(i, p) {
		return i, true
	}
	if e, ok := l.exceptions[word]; ok && e[p] != "" {
		if i, ok := l.lemmas[e[p]]; ok && l.has(i, p) {
			return i, true
		}
	}
	var buf [64]byte
	for _, e := range endings[p] {
		if stem, ok := strings.CutSuffix(word, e[0]); ok && len(stem)+len(e[1]) <= len(buf) {
			b := append(append(buf[:0], stem...), e[1]...)
			if i, ok := l.lemmas[string(b)]; ok && l.has(i, p) { // looked up without a copy
				return i, true
			}
		}
	}
	return 0, false
}

// functionWords are English pronouns, articles, auxiliaries, prepositions
// and conjunctions: WordNet knows some of them as other words ("can" a
// container, "I" iodine, "is" a form of "be" with 13 senses), concepts
// that only blur what a text is about (measured on BANKING77: a little
// more accurate without them, and 6% fewer features).
var functionWords = map[string]bool{}

func init() {
	for w := range strings.FieldsSeq(`a about above after again against all am an and any are aren't as at be because been
		before being below between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down
		during each few for from further had hadn't has hasn't have haven't having he he'd he'll he's her here here's hers
		herself him himself his how how's i i'd i'll i'm i've if in into is isn't it it's its itself let's me more most
		mustn't my myself no nor not of off on once only or other ought our ours ourselves out over own same shan't she
		she'd she'll she's should shouldn't so some such than that that's the their theirs them themselves then there
		there's these they they'd they'll they're they've this those through to too under until up very was wasn't we
		we'd we'll we're we've were weren't what what's when when's where where's which while who who's whom why why's
		with won't would wouldn't you you'd you'll you're you've your yours yourself yourselves im ive dont cant wont`) {
		functionWords[w] = true
	}
}
