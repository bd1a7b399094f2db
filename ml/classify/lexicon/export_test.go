package lexicon

// Embedded is the embedded lexicon's file, for the benchmark.
func Embedded() []byte { return embedded }
