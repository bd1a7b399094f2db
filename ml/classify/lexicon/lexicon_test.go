package lexicon_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/adaptflow/adaptflow/ml/classify/lexicon"
)

// wordnet writes a small WordNet 3.0 database in its own formats (license
// lines first, synsets found by their byte offsets) to a directory.
func wordnet(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	const license = "  1 This software and database is being provided to you, the LICENSEE, by  \n  2 Princeton University under the following license.  \n"
	// synsets of a part of speech: name, words, hypernym (a name, or "").
	type synset struct {
		name, hyper string
		words       []string
	}
	offsets := map[string]string{}
	data := func(file, pos string, synsets []synset) {
		// Offsets first (each line's length does not depend on the
		// hypernym's offset: 8 digits).
		var b strings.Builder
		b.WriteString(license)
		lines := make([]func() string, len(synsets))
		for i, s := range synsets {
			off := fmt.Sprintf("%08d", b.Len())
			offsets[s.name] = off
			lines[i] = func() string {
				words := ""
				for _, w := range s.words {
					words += w + " 0 "
				}
				ptrs := "000 "
				if s.hyper != "" {
					ptrs = "001 @ " + offsets[s.hyper] + " " + pos + " 0000 "
				}
				return fmt.Sprintf("%s 03 %s %02x %s%s| a gloss  \n", off, pos, len(s.words), words, ptrs)
			}
			b.WriteString(lines[i]())
		}
		var out strings.Builder
		out.WriteString(license)
		for _, l := range lines {
			out.WriteString(l())
		}
		if out.Len() != b.Len() {
			t.Fatalf("%s: offsets moved", file)
		}
		write(t, filepath.Join(dir, file), out.String())
	}
	data("data.noun", "n", []synset{
		{name: "paper", words: []string{"paper"}},
		{name: "card", words: []string{"card", "credit_card"}, hyper: "paper"},
		{name: "goose", words: []string{"goose"}},
		{name: "s1", words: []string{"many"}}, {name: "s2", words: []string{"many"}}, {name: "s3", words: []string{"many"}}, {name: "s4", words: []string{"many", "fourth"}},
	})
	data("data.verb", "v", []synset{
		{name: "get", words: []string{"get"}},
		{name: "buy", words: []string{"buy", "purchase"}, hyper: "get"},
		{name: "pay", words: []string{"pay"}},
	})
	data("data.adj", "a", nil)
	data("data.adv", "r", nil)
	index := func(file, pos string, lemmas map[string][]string) {
		var b strings.Builder
		b.WriteString(license)
		for _, l := range slices.Sorted(func(yield func(string) bool) {
			for k := range lemmas {
				if !yield(k) {
					return
				}
			}
		}) {
			var offs []string
			for _, s := range lemmas[l] {
				offs = append(offs, offsets[s])
			}
			fmt.Fprintf(&b, "%s %s %d 1 @ %d 0 %s  \n", l, pos, len(offs), len(offs), strings.Join(offs, " "))
		}
		write(t, filepath.Join(dir, file), b.String())
	}
	index("index.noun", "n", map[string][]string{"paper": {"paper"}, "card": {"card"}, "credit_card": {"card"}, "goose": {"goose"}, "many": {"s1", "s2", "s3", "s4"}, "fourth": {"s4"}})
	index("index.verb", "v", map[string][]string{"get": {"get"}, "buy": {"buy"}, "purchase": {"buy"}, "pay": {"pay"}})
	index("index.adj", "a", nil)
	index("index.adv", "r", nil)
	write(t, filepath.Join(dir, "noun.exc"), "geese goose\n")
	write(t, filepath.Join(dir, "verb.exc"), "bought buy\npaid pay\ngeese nothing\n")
	write(t, filepath.Join(dir, "adj.exc"), "")
	write(t, filepath.Join(dir, "adv.exc"), "")
	return dir
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func shared(l *lexicon.Lexicon, a, b string) int {
	n := 0
	for _, c := range l.Concepts(nil, a) {
		if slices.Contains(l.Concepts(nil, b), c) {
			n++
		}
	}
	return n
}

// Build reads WordNet's files; the lexicon it writes knows a word by its
// base form, through its senses and what they are a kind of.
func TestBuild(t *testing.T) {
	dir := wordnet(t)
	var out bytes.Buffer
	if err := lexicon.Build(dir, &out); err != nil {
		t.Fatal(err)
	}
	var again bytes.Buffer
	if err := lexicon.Build(dir, &again); err != nil || !bytes.Equal(out.Bytes(), again.Bytes()) {
		t.Fatalf("a second build differs (%v)", err)
	}
	l, err := lexicon.Load(&out)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		a, b string
		want int
	}{
		{"buy", "purchase", 2},   // one synset, one hypernym
		{"bought", "buy", 2},     // an exception of inflection
		{"purchasing", "buy", 2}, // an ending: purchas(e)ing
		{"purchased", "buy", 2},
		{"cards", "card", 2},  // card, and paper (its hypernym)
		{"card", "paper", 0},  // a card is a kind of paper: a concept of its own
		{"geese", "goose", 1}, // nouns' exceptions; the verb's is no lemma
		{"buy", "get", 0},     // a hypernym is not the synset
		{"paid", "pay", 1},
		{"many", "fourth", 0}, // the fourth sense is left out
		{"many", "many", 3},
		{"credit", "card", 0}, // a lemma of two words is none
		{"the", "the", 0},
	}
	for _, c := range cases {
		if got := shared(l, c.a, c.b); got != c.want {
			t.Errorf("%q and %q share %d concepts, want %d", c.a, c.b, got, c.want)
		}
	}
	if _, err := lexicon.Load(strings.NewReader("not gzip")); err == nil {
		t.Error("a lexicon that is not one loaded")
	}
}

// The embedded lexicon is WordNet's: words of one meaning share concepts;
// function words have none.
func TestDefault(t *testing.T) {
	l := lexicon.Default()
	for _, c := range [][2]string{{"buy", "purchase"}, {"bought", "purchased"}, {"cards", "card"}, {"withdrawal", "withdrawals"}, {"fee", "fees"}, {"cancel", "cancelled"}} {
		if shared(l, c[0], c[1]) == 0 {
			t.Errorf("%q and %q share no concept", c[0], c[1])
		}
	}
	for _, w := range []string{"xyzzyq", "the", "is", "can", "i"} {
		if c := l.Concepts(nil, w); len(c) != 0 {
			t.Errorf("%q has concepts %v (an unknown word, or a function word)", w, c)
		}
	}
	if len(l.Concepts(nil, "cans")) == 0 {
		t.Error(`"cans" (containers) has no concept`)
	}
}

// BenchmarkLoad reads the embedded lexicon, as the first training does.
func BenchmarkLoad(b *testing.B) {
	for b.Loop() {
		if _, err := lexicon.Load(bytes.NewReader(lexicon.Embedded())); err != nil {
			b.Fatal(err)
		}
	}
}
