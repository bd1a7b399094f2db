package classify_test

import (
	"os"
	"testing"

	"github.com/adaptflow/adaptflow/ml/classify"
)

// BenchmarkClassify classifies held-out BANKING77 messages with a model
// trained on the rest (../shared/data; skipped where it is not).
func BenchmarkClassify(b *testing.B) {
	f, err := os.Open("../../../shared/data/banking77/train.csv")
	if err != nil {
		b.Skip("no BANKING77 data here")
	}
	all, err := classify.ReadCSV(f)
	_ = f.Close()
	if err != nil {
		b.Fatal(err)
	}
	train, test := classify.StratifiedSplit(all, 0.2, 1)
	m, err := classify.Train(train, classify.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		m.Classify(test[i%len(test)].Text)
	}
}
