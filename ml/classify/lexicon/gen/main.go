// Command gen writes the lexicon package's wordnet.tsv.gz from a WordNet
// 3.0 database (Debian: apt-get install wordnet-base).
package main

import (
	"flag"
	"log"
	"os"

	"github.com/adaptflow/adaptflow/ml/classify/lexicon"
)

func main() {
	dict := flag.String("wordnet", "/usr/share/wordnet", "WordNet 3.0's dict directory")
	out := flag.String("out", "wordnet.tsv.gz", "file to write")
	flag.Parse()
	f, err := os.Create(*out)
	if err != nil {
		log.Fatal(err)
	}
	if err := lexicon.Build(*dict, f); err != nil {
		log.Fatal(err)
	}
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}
}
