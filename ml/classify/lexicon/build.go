package lexicon

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Senses is how many of a lemma's senses (most frequent first) give it
// concepts, per part of speech.
const Senses = 3

var posFiles = [...]string{"noun", "verb", "adj", "adv"}

// posLetters are the parts of speech in the order of posFiles.
const posLetters = "nvar"

// Build reads a WordNet 3.0 database (the dict directory: index.*, data.*,
// *.exc) and writes the lexicon Load reads: each one-word lemma with, per
// part of speech, the concepts of its first Senses senses and, for nouns
// and verbs, of their direct hypernyms (a concept of its own: "a kind
// of"), each concept a small number; then each exception of inflection
// ("geese" of "goose"). The output is gzip-compressed text, and the same
// for the same database.
func Build(dict string, w io.Writer) error {
	ids := map[string]uint32{}
	id := func(key string) uint32 {
		if n, ok := ids[key]; ok {
			return n
		}
		n := uint32(len(ids))
		ids[key] = n
		return n
	}
	type lemmaConcepts [4][]uint32
	lemmas := map[string]*lemmaConcepts{}
	for p, name := range posFiles {
		data, err := os.Open(filepath.Join(dict, "data."+name))
		if err != nil {
			return err
		}
		defer data.Close()
		index, err := readLines(filepath.Join(dict, "index."+name))
		if err != nil {
			return err
		}
		for _, line := range index {
			f := strings.Fields(line)
			if strings.HasPrefix(line, " ") || len(f) < 6 {
				continue // the license at the top
			}
			lemma := f[0]
			if !isWord(lemma) {
				continue
			}
			pointers, err := strconv.Atoi(f[3])
			if err != nil || len(f) < 6+pointers {
				return fmt.Errorf("index.%s: %q: malformed", name, lemma)
			}
			offsets := f[6+pointers:]
			if len(offsets) > Senses {
				offsets = offsets[:Senses]
			}
			var concepts []uint32
			for _, off := range offsets {
				concepts = append(concepts, id(posLetters[p:p+1]+off))
				if p > 1 {
					continue // adjectives and adverbs have no hypernyms
				}
				hyper, err := hypernyms(data, off)
				if err != nil {
					return fmt.Errorf("data.%s: %s: %w", name, off, err)
				}
				for _, h := range hyper {
					concepts = append(concepts, id("h"+h))
				}
			}
			lc := lemmas[lemma]
			if lc == nil {
				lc = &lemmaConcepts{}
				lemmas[lemma] = lc
			}
			lc[p] = compact(concepts)
		}
	}
	var bw strings.Builder
	fmt.Fprintf(&bw, "# Derived from WordNet 3.0, Copyright 2006 by Princeton University (see LICENSE-WORDNET).\n")
	fmt.Fprintf(&bw, "# lemma, then per part of speech (n v a r) its concepts; ~inflected, then per part of speech its base forms.\n")
	for _, lemma := range slices.Sorted(maps.Keys(lemmas)) {
		bw.WriteString(lemma)
		for _, c := range lemmas[lemma] {
			bw.WriteByte('\t')
			for i, n := range c {
				if i > 0 {
					bw.WriteByte(',')
				}
				bw.WriteString(strconv.FormatUint(uint64(n), 10))
			}
		}
		bw.WriteByte('\n')
	}
	exceptions := map[string]*[4][]string{}
	for p, name := range posFiles {
		lines, err := readLines(filepath.Join(dict, name+".exc"))
		if err != nil {
			return err
		}
		for _, line := range lines {
			f := strings.Fields(line)
			if len(f) < 2 || !isWord(f[0]) {
				continue
			}
			var bases []string
			for _, b := range f[1:] {
				if isWord(b) && lemmas[b] != nil && lemmas[b][p] != nil {
					bases = append(bases, b)
				}
			}
			if len(bases) == 0 {
				continue
			}
			e := exceptions[f[0]]
			if e == nil {
				e = &[4][]string{}
				exceptions[f[0]] = e
			}
			e[p] = bases
		}
	}
	for _, word := range slices.Sorted(maps.Keys(exceptions)) {
		bw.WriteString("~" + word)
		for _, bases := range exceptions[word] {
			bw.WriteString("\t" + strings.Join(bases, ","))
		}
		bw.WriteByte('\n')
	}
	zw := gzip.NewWriter(w)
	if _, err := io.WriteString(zw, bw.String()); err != nil {
		return err
	}
	return zw.Close()
}

// hypernyms reads the synsets a synset of data is a kind (or an instance)
// of, as part of speech and offset.
func hypernyms(data *os.File, offset string) ([]string, error) {
	at, err := strconv.ParseInt(offset, 10, 64)
	if err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(io.NewSectionReader(data, at, 1<<16)).ReadString('\n')
	if err != nil {
		return nil, err
	}
	f := strings.Fields(line)
	if len(f) < 4 || f[0] != offset {
		return nil, fmt.Errorf("no synset at this offset")
	}
	words, err := strconv.ParseUint(f[3], 16, 8)
	if err != nil {
		return nil, err
	}
	i := 4 + 2*int(words)
	if i >= len(f) {
		return nil, fmt.Errorf("malformed synset")
	}
	pointers, err := strconv.Atoi(f[i])
	if err != nil || len(f) < i+1+4*pointers {
		return nil, fmt.Errorf("malformed pointers")
	}
	var out []string
	for k := range pointers {
		p := f[i+1+4*k:]
		if p[0] == "@" || p[0] == "@i" {
			out = append(out, p[2]+p[1])
		}
	}
	return out, nil
}

func readLines(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return strings.Split(strings.TrimRight(string(b), "\n"), "\n"), nil
}

// isWord keeps the lemmas a text's tokens can be: one word of lower-case
// letters, digits and apostrophes.
func isWord(s string) bool {
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '\'' {
			return false
		}
	}
	return s != ""
}

// compact drops repeated concepts, keeping the first of each.
func compact(c []uint32) []uint32 {
	out := c[:0]
	for _, n := range c {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}
