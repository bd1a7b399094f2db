package sqlite_test

import (
	"database/sql"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/adaptflow/adaptflow/store"
	"github.com/adaptflow/adaptflow/store/sqlite"
)

// BenchmarkSignalHistory measures GET /v1/processes/{name}/signals's read
// on the embedded store: one value signal observed 100,000 times over a
// week, 168 hourly periods, the latest and the 20 latest flagged.
func BenchmarkSignalHistory(b *testing.B) {
	st := openBench(b)
	now := time.Now().UTC()
	const n = 100_000
	rng := rand.New(rand.NewPCG(5, 5))
	obs := make([]store.Observation, n)
	for i := range obs {
		obs[i] = store.Observation{Process: "orders", Signal: "amount", At: now.Add(-time.Duration(i) * (7 * 24 * time.Hour / n)), Value: 100 + rng.NormFloat64()*10,
			InstanceID: fmt.Sprint("i-", i), Verdict: &store.SignalVerdict{Anomalous: rng.IntN(200) == 0, Expected: 100, Low: 70, High: 130, Reason: "within"}}
	}
	if err := st.AppendObservations(b.Context(), obs...); err != nil {
		b.Fatal(err)
	}
	q := store.SignalQuery{Process: "orders", Signal: "amount", Since: now.Add(-7 * 24 * time.Hour).Truncate(time.Hour), Until: now.Add(time.Second), Bucket: time.Hour, Flagged: 20}
	b.ResetTimer()
	for b.Loop() {
		h, err := st.SignalHistory(b.Context(), q)
		if err != nil || h.Observations != n || len(h.Periods) < 168 || len(h.Flagged) != 20 || h.Latest == nil {
			b.Fatalf("history: %d observations, %d periods, %d flagged, %v", h.Observations, len(h.Periods), len(h.Flagged), err)
		}
	}
}

// BenchmarkInstancesByInput lists the instances of a customer among
// 100,000 of a process, by a field of their input (not indexed: the
// newest are read until the page is full): 100 match, a page of 50.
func BenchmarkInstancesByInput(b *testing.B) {
	st := openBench(b)
	now := time.Now().UTC()
	const n = 100_000
	for i := range n {
		in := store.Instance{ID: fmt.Sprint("i-", i), Process: "orders", ProcessVersion: 1, BusinessKey: fmt.Sprint("k-", i),
			Input: fmt.Appendf(nil, `{"amount":%d,"customer":"C-%d","items":[{"qty":1,"sku":"X"}]}`, i%500, i%1000), CreatedAt: now.Add(-time.Duration(i) * time.Second)}
		if _, _, err := st.CreateInstance(b.Context(), in); err != nil {
			b.Fatal(err)
		}
	}
	f := store.InstanceFilter{Process: "orders", Input: []store.InputMatch{{Field: "customer", Value: "C-7"}}, Limit: 50}
	b.ResetTimer()
	for b.Loop() {
		page, err := st.Instances(b.Context(), f)
		if err != nil || len(page) != 50 {
			b.Fatalf("%d instances, %v", len(page), err)
		}
	}
}

// BenchmarkAdmit100k admits instances of a process with a concurrency
// limit among 100,000 of it that ended and 1,000 running: each admission
// counts the slots held and looks for an older queued instance, as a
// start under the limit does. Every other one finds the limit full and is
// refused; the others find a slot.
func BenchmarkAdmit100k(b *testing.B) {
	ctx := b.Context()
	st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "s.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	create := func(id string, queued bool, status string) {
		if _, _, err := st.CreateInstance(ctx, store.Instance{ID: id, Process: "orders", ProcessVersion: 1, BusinessKey: id, Input: []byte(`{}`),
			CreatedAt: now, PendingStart: true, Queued: queued}); err != nil {
			b.Fatal(err)
		}
		if status != "" {
			if _, err := st.SaveInstanceState(ctx, id, "r", 1, []byte(`{"status":"`+status+`"}`)); err != nil {
				b.Fatal(err)
			}
		}
	}
	for i := range 100_000 {
		create(fmt.Sprintf("done-%06d", i), false, "completed")
	}
	for i := range 1000 {
		create(fmt.Sprintf("run-%04d", i), false, "running")
	}
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		id := fmt.Sprintf("q-%08d", i)
		create(id, true, "")
		limit := 1000 + 1 - i%2 // a slot free, or none
		b.StartTimer()
		ok, err := st.Admit(ctx, id, limit)
		b.StopTimer()
		if err != nil || ok != (i%2 == 0) {
			b.Fatalf("admission %d: %v %v", i, ok, err)
		}
		// It ends (it ran, or was canceled while queued): 1,000 run again.
		if _, err := st.SaveInstanceState(ctx, id, "r", 1, []byte(`{"status":"canceled"}`)); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkSnapshot300MB backs up a store beside a 300 MB database (as
// Temporal's): held-ms is how long the store's writers were held back,
// the rest of the time the copy took while writes could go on.
func BenchmarkSnapshot300MB(b *testing.B) {
	dir := b.TempDir()
	primary, other := filepath.Join(dir, "adaptflow.db"), filepath.Join(dir, "temporal.db")
	st, err := sqlite.Open(b.Context(), primary)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	db, err := sql.Open("sqlite", "file:"+other+"?_pragma=journal_mode(WAL)")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{`CREATE TABLE blobs (b BLOB)`,
		`WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 300000) INSERT INTO blobs SELECT randomblob(1000) FROM c`} {
		if _, err := db.Exec(q); err != nil {
			b.Fatal(err)
		}
	}
	var held time.Duration
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		undo := sqlite.OnSnapshotPinned(func() { held += time.Since(start) })
		_, err := sqlite.Snapshot(b.Context(), primary, []string{other}, filepath.Join(dir, fmt.Sprint("backup-", i)))
		undo()
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(held.Microseconds())/1000/float64(b.N), "held-ms/op")
}

// BenchmarkExampleSearch searches a classifier's 100,000 examples for a
// piece of text in any case (a scan: no index serves a substring), one in
// 10,000 matching: a page of the 10. A text of ASCII letters only, and
// one of others.
func BenchmarkExampleSearch(b *testing.B) {
	st := openBench(b)
	now := time.Now().UTC()
	const n = 100_000
	es := make([]store.Example, 0, 1000)
	for i := range n {
		text := fmt.Sprintf("Where is my card number %d? It was sent to Zürich last week", i)
		if i%10_000 == 0 {
			text = fmt.Sprintf("ÜBERWEISUNG %d failed twice", i)
		}
		es = append(es, store.Example{ID: fmt.Sprint("x-", i), Classifier: "desk", Text: text, Label: "card", Source: "api:importer", CreatedAt: now.Add(-time.Duration(i) * time.Second)})
		if len(es) == cap(es) {
			if err := st.PutExamples(b.Context(), es); err != nil {
				b.Fatal(err)
			}
			es = es[:0]
		}
	}
	// ASCII's letters fold by SQLite's lower(); others by Go's.
	for _, text := range []string{"FAILED twice", "überweisung"} {
		b.Run(text, func(b *testing.B) {
			f := store.ExampleFilter{Classifier: "desk", Text: text, Limit: 50}
			for b.Loop() {
				page, err := st.ExamplesPage(b.Context(), f)
				if err != nil || len(page) != 10 {
					b.Fatalf("%d examples, %v", len(page), err)
				}
			}
		})
	}
}

// openBench opens a new store for a benchmark, closed when it ends.
func openBench(b *testing.B) *sqlite.Store {
	b.Helper()
	st, err := sqlite.Open(b.Context(), filepath.Join(b.TempDir(), "s.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	return st
}
