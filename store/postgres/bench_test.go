package postgres_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgvector/pgvector-go"

	"github.com/adaptflow/adaptflow/policies"
	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
	"github.com/adaptflow/adaptflow/store/postgres"
	"github.com/adaptflow/adaptflow/store/storetest"
	"github.com/adaptflow/adaptflow/store/vectors"
)

func openBench(b *testing.B, dim int) (*postgres.Store, string) {
	b.Helper()
	url := storetest.FreshPostgres(b)
	s, err := postgres.Open(b.Context(), url, postgres.Options{Migrate: true, EmbeddingDim: dim, MaxConns: 16})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s, url
}

// openBenchConn is openBench with a plain connection, to bulk-load rows.
func openBenchConn(b *testing.B) (*postgres.Store, *pgx.Conn) {
	b.Helper()
	s, url := openBench(b, 0)
	conn, err := pgx.Connect(b.Context(), url)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close(context.Background()) })
	return s, conn
}

func benchDecision(run string, seq int) process.Decision {
	d := process.Decision{
		ID: fmt.Sprintf("dc_%s_%d", run, seq), InstanceID: "i-" + run, RunID: run, Seq: seq, Time: time.Now().UTC(),
		Process: "orders", ProcessVersion: 1, Step: "pack",
		Facts: []byte(`{"input":{"order_id":"A-1","amount":120,"items":[{"sku":"X","qty":2}]},"calendar":{"season":"peak","month":11},"signals":{}}`),
		Evaluations: []process.Evaluation{{PolicyID: "peak-qa", PolicyVersion: 1, Mode: "active", When: `calendar.season == "peak"`, Matched: true,
			Trace: []process.TraceStep{{Expr: `calendar.season == "peak"`, Value: true}, {Expr: "calendar.season", Value: "peak"}}}},
		Applied:  []process.AppliedAction{{Action: process.Action{Add: "extra_qa", After: "pack"}, PolicyID: "peak-qa"}},
		Rejected: []process.Rejection{}, Model: "none",
	}
	d.Hash = d.ComputeHash()
	return d
}

// BenchmarkAppendDecisions measures decision record appends per second with
// 8 concurrent writers.
func BenchmarkAppendDecisions(b *testing.B) {
	s, _ := openBench(b, 0)
	var next atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				if _, err := s.AppendDecision(context.Background(), benchDecision(fmt.Sprintf("w%d-%d", w, i), 1)); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "appends/s")
}

// BenchmarkExplanationLookup measures reading one decision record and
// rendering its explanation, with 1,000,000 records stored.
func BenchmarkExplanationLookup(b *testing.B) {
	const n = 1_000_000
	s, conn := openBenchConn(b)
	ctx := b.Context()
	rec := string(process.JSON(benchDecision("x", 1)))
	start := time.Now()
	copied, err := conn.CopyFrom(ctx, pgx.Identifier{"decisions"},
		[]string{"id", "instance_id", "run_id", "seq", "step", "time", "record", "prev_hash", "hash", "process"},
		pgx.CopyFromSlice(n, func(i int) ([]any, error) {
			run := fmt.Sprintf("r%d", i/5)
			return []any{fmt.Sprintf("dc_%d", i), "i" + run, run, int32(i%5 + 1), "pack", time.Now().UnixMicro(), rec, "", "h", "orders"}, nil
		}))
	if err != nil || copied != n {
		b.Fatalf("copy: %d rows, %v", copied, err)
	}
	if _, err := conn.Exec(ctx, "ANALYZE decisions"); err != nil {
		b.Fatal(err)
	}
	b.Logf("loaded %d decision records in %s", n, time.Since(start).Round(time.Second))
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		d, err := s.Decision(ctx, fmt.Sprintf("dc_%d", (i*7919)%n))
		if err != nil || d.Step != "pack" {
			b.Fatal(d.Step, err)
		}
		if ex := policies.Explain(d); ex.Text == "" {
			b.Fatal("no explanation")
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)*95/100].Microseconds())/1000, "p95-ms")
}

// BenchmarkNearestExamples measures top-10 nearest neighbours through HNSW
// over 100,000 examples of 256 dimensions, and its recall@10 against exact
// search. The vectors are clustered, as embeddings of real text are (100
// topics with spread), not uniform noise.
func BenchmarkNearestExamples(b *testing.B) {
	const n, dim, k, queries = 100_000, 256, 10, 200
	s, url := openBench(b, dim)
	ctx := b.Context()
	rng := rand.New(rand.NewPCG(1, 2))
	centers := make([][]float32, 100)
	for c := range centers {
		centers[c] = make([]float32, dim)
		for j := range dim {
			centers[c][j] = float32(rng.NormFloat64())
		}
	}
	sample := func() []float32 {
		c := centers[rng.IntN(len(centers))]
		v := make([]float32, dim)
		for j := range dim {
			v[j] = c[j] + 0.6*float32(rng.NormFloat64())
		}
		return v
	}
	data := make([][]float32, n)
	for i := range data {
		data[i] = sample()
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	start := time.Now()
	// COPY in text format: pgvector's text form of each vector.
	for lo := 0; lo < n; lo += 5000 {
		var sb strings.Builder
		sb.WriteString("INSERT INTO examples (id, classifier, text, label, embedding, created_at) SELECT 'e' || i, 'emails', '', 'l', v::vector, 0 FROM unnest($1::int[], $2::text[]) AS t(i, v)")
		ids := make([]int32, 0, 5000)
		vecs := make([]string, 0, 5000)
		for i := lo; i < min(lo+5000, n); i++ {
			ids = append(ids, int32(i))
			vecs = append(vecs, pgvector.NewVector(data[i]).String())
		}
		if _, err := conn.Exec(ctx, sb.String(), ids, vecs); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := conn.Exec(ctx, "VACUUM ANALYZE examples"); err != nil {
		b.Fatal(err)
	}
	b.Logf("loaded %d examples with their HNSW index in %s", n, time.Since(start).Round(time.Second))

	qs := make([][]float32, queries)
	truth := make([]map[string]bool, queries)
	for qi := range qs {
		qs[qi] = sample()
		top := vectors.NewTopK[int](k)
		qn := vectors.Norm(qs[qi])
		for i, v := range data {
			top.Push(i, vectors.CosineDistance(qs[qi], qn, v))
		}
		ids, _ := top.Sorted()
		truth[qi] = map[string]bool{}
		for _, id := range ids {
			truth[qi][fmt.Sprintf("e%d", id)] = true
		}
	}
	lat := make([]time.Duration, 0, b.N)
	found, total := 0, 0
	b.ResetTimer()
	for i := range b.N {
		qi := i % queries
		t0 := time.Now()
		got, err := s.NearestExamples(ctx, "emails", qs[qi], k)
		lat = append(lat, time.Since(t0))
		if err != nil {
			b.Fatal(err)
		}
		for _, g := range got {
			if truth[qi][g.ID] {
				found++
			}
		}
		total += k
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)*95/100].Microseconds())/1000, "p95-ms")
	b.ReportMetric(float64(found)/float64(total), "recall@10")
}

// BenchmarkInbox measures a reviewer's inbox query (one queue's open
// reviews by due time, 50 a page, then the next page by cursor) with
// 100,000 reviews stored: most decided, some claimed, spread over 20
// queues.
func BenchmarkInbox(b *testing.B) {
	s, conn := openBenchConn(b)
	ctx := b.Context()
	now := time.Now()
	seedReviews(b, conn, 100_000, now)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		f := store.ReviewFilter{Status: store.ReviewOpen, Queue: fmt.Sprintf("q%d", (i%10)*2), Limit: 50, Now: now}
		page, err := s.Reviews(ctx, f)
		if err != nil || len(page) != 50 {
			b.Fatalf("first page: %d reviews, %v", len(page), err)
		}
		f.After = store.ReviewCursor(page[len(page)-1])
		if page, err = s.Reviews(ctx, f); err != nil || len(page) == 0 {
			b.Fatalf("next page: %d reviews, %v", len(page), err)
		}
		lat = append(lat, time.Since(t0)/2)
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)*95/100].Microseconds())/1000, "p95-ms")
}

// seedReviews stores n reviews raised over the last 30 days, spread over
// 20 queues: a fifth open in every queue (a quarter of those claimed), the
// rest decided an hour after they were raised.
func seedReviews(b *testing.B, conn *pgx.Conn, n int, now time.Time) {
	ctx := b.Context()
	rng := rand.New(rand.NewPCG(7, 7))
	copied, err := conn.CopyFrom(ctx, pgx.Identifier{"reviews"},
		[]string{"id", "instance_id", "run_id", "process", "step", "queue", "reason", "status", "verdict", "reviewer", "created_at", "due_at", "claimed_by", "claim_expires_at", "decided_at"},
		pgx.CopyFromSlice(n, func(i int) ([]any, error) {
			created := now.Add(-time.Duration(rng.IntN(30*24)) * time.Hour)
			due := created.Add(time.Duration(1+rng.IntN(48)) * time.Hour).UnixMicro()
			status, verdict, reviewer := "decided", "approve", "ann"
			var claimedBy string
			var claimUntil, decided any = nil, created.Add(time.Hour).UnixMicro()
			if (i/20)%5 == 0 {
				status, verdict, reviewer, decided = "open", "", "", nil
				if (i/20)%20 == 0 {
					claimedBy, claimUntil = "bob", now.Add(time.Hour).UnixMicro()
				}
			}
			return []any{fmt.Sprintf("rv_%d", i), fmt.Sprintf("i%d", i), "r", "orders", "approve", fmt.Sprintf("q%d", i%20), "check",
				status, verdict, reviewer, created.UnixMicro(), due, claimedBy, claimUntil, decided}, nil
		}))
	if err != nil || copied != int64(n) {
		b.Fatalf("copy: %d rows, %v", copied, err)
	}
	if _, err := conn.Exec(ctx, "ANALYZE reviews"); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkQueueSummaries measures GET /v1/queues's read: where each of 20
// queues stands, with the verdicts of the last day, among 100,000 reviews.
func BenchmarkQueueSummaries(b *testing.B) {
	s, conn := openBenchConn(b)
	ctx := b.Context()
	now := time.Now()
	seedReviews(b, conn, 100_000, now)
	b.ResetTimer()
	for b.Loop() {
		qs, err := s.QueueSummaries(ctx, store.QueueFilter{Since: now.Add(-24 * time.Hour), Now: now})
		if err != nil || len(qs) != 20 || qs[0].Open+qs[0].Claimed != 1000 || qs[0].Decided == 0 {
			b.Fatalf("summaries: %+v, %v", qs, err)
		}
	}
}

// seedOutcomes stores n instances of orders and n of returns started in
// the last 30 days, in mixed statuses, and reviews on a fifth of n.
func seedOutcomes(b *testing.B, conn *pgx.Conn, n int, now time.Time) {
	ctx := b.Context()
	rng := rand.New(rand.NewPCG(3, 3))
	statuses := []string{"completed", "completed", "completed", "failed", "rejected", "running"}
	copied, err := conn.CopyFrom(ctx, pgx.Identifier{"instances"},
		[]string{"id", "process", "process_version", "business_key", "input", "created_by", "created_at", "status", "finished_at"},
		pgx.CopyFromSlice(2*n, func(i int) ([]any, error) {
			created := now.Add(-time.Duration(rng.Int64N(int64(30 * 24 * time.Hour))))
			status := statuses[rng.IntN(len(statuses))]
			var finished any
			if status != "running" {
				finished = created.Add(time.Duration(rng.Int64N(int64(4 * time.Hour)))).UnixMicro()
			}
			return []any{fmt.Sprintf("i%d", i), []string{"orders", "returns"}[i%2], 1 + i%3, fmt.Sprintf("k%d", i), "{}", "bench", created.UnixMicro(), status, finished}, nil
		}))
	if err != nil || copied != int64(2*n) {
		b.Fatalf("copy instances: %d rows, %v", copied, err)
	}
	copied, err = conn.CopyFrom(ctx, pgx.Identifier{"reviews"},
		[]string{"id", "instance_id", "run_id", "process", "step", "queue", "reason", "status", "created_at", "decided_at"},
		pgx.CopyFromSlice(n/5, func(i int) ([]any, error) {
			created := now.Add(-time.Duration(rng.Int64N(int64(30 * 24 * time.Hour))))
			return []any{fmt.Sprintf("rv_%d", i), fmt.Sprintf("i%d", 10*i), "r", "orders", "approve", "ops", "check", "decided", created.UnixMicro(), created.Add(time.Hour).UnixMicro()}, nil
		}))
	if err != nil || copied != int64(n/5) {
		b.Fatalf("copy reviews: %d rows, %v", copied, err)
	}
	if _, err := conn.Exec(ctx, "ANALYZE instances; ANALYZE reviews"); err != nil {
		b.Fatal(err)
	}
}

// withOutcomes is a store holding seedOutcomes's instances, seeded up to
// now, with the benchmark's timer reset.
func withOutcomes(b *testing.B, n int) (*postgres.Store, time.Time) {
	s, conn := openBenchConn(b)
	now := time.Now()
	seedOutcomes(b, conn, n, now)
	b.ResetTimer()
	return s, now
}

// BenchmarkProcessOutcomes measures reading the outcomes behind a
// process's KPIs for a 30-day window of 100,000 instances (a fifth with a
// review), as GET /v1/processes/{name}/kpis does; other processes' 100,000
// instances share the table.
func BenchmarkProcessOutcomes(b *testing.B) {
	const n = 100_000
	s, now := withOutcomes(b, n)
	ctx := b.Context()
	for b.Loop() {
		count, reviews := 0, 0
		err := s.Outcomes(ctx, "orders", now.Add(-30*24*time.Hour), now.Add(time.Minute), func(o store.InstanceOutcome) error {
			count++
			reviews += o.Reviews
			return nil
		})
		if err != nil || count != n || reviews != n/5 {
			b.Fatalf("%d outcomes with %d reviews, %v", count, reviews, err)
		}
	}
}

// BenchmarkProcessLoads measures the counts GET /v1/processes gives each
// process (in progress, waiting for review, failed in the last day) among
// 200,000 instances of 30 days, a sixth of them running and a sixth
// failed.
func BenchmarkProcessLoads(b *testing.B) {
	const n = 100_000
	s, now := withOutcomes(b, n)
	ctx := b.Context()
	for b.Loop() {
		loads, err := s.ProcessLoads(ctx, now.Add(-24*time.Hour))
		if o := loads["orders"]; err != nil || len(loads) != 2 || o.InProgress < n/10 || o.Failed == 0 || o.Failed > n/100 {
			b.Fatalf("loads %+v, %v", loads, err)
		}
	}
}

// BenchmarkInstanceListing pages through a process's failed instances,
// 50 at a time, five pages by cursor, among 200,000 instances.
func BenchmarkInstanceListing(b *testing.B) {
	s, _ := withOutcomes(b, 100_000)
	ctx := b.Context()
	for b.Loop() {
		f := store.InstanceFilter{Process: "orders", Status: store.InstanceFailed, Limit: 50}
		for range 5 {
			page, err := s.Instances(ctx, f)
			if err != nil || len(page) != 50 || page[0].Status != store.InstanceFailed {
				b.Fatalf("%d instances, %v", len(page), err)
			}
			f.After = store.InstanceCursor(page[len(page)-1])
		}
	}
}

// BenchmarkSignalHistory measures GET /v1/processes/{name}/signals's read
// of one value signal observed 100,000 times over a week: 168 hourly
// periods, the latest observation and the 20 latest flagged.
func BenchmarkSignalHistory(b *testing.B) {
	s, conn := openBenchConn(b)
	ctx := b.Context()
	now := time.Now().UTC()
	const n = 100_000
	rng := rand.New(rand.NewPCG(5, 5))
	copied, err := conn.CopyFrom(ctx, pgx.Identifier{"observations"},
		[]string{"process", "signal", "at", "value", "instance_id", "score", "anomalous", "warming_up", "recurring", "expected", "low", "high", "reason"},
		pgx.CopyFromSlice(n, func(i int) ([]any, error) {
			at := now.Add(-time.Duration(i) * (7 * 24 * time.Hour / n))
			anomalous := 0
			if rng.IntN(200) == 0 {
				anomalous = 1
			}
			return []any{"orders", "amount", at.UnixMicro(), 100 + rng.NormFloat64()*10, fmt.Sprint("i-", i), rng.Float64(), anomalous, 0, 0, 100.0, 70.0, 130.0, "within what is usual"}, nil
		}))
	if err != nil || copied != n {
		b.Fatalf("seed: %d rows, %v", copied, err)
	}
	if _, err := conn.Exec(ctx, "VACUUM ANALYZE observations"); err != nil {
		b.Fatal(err)
	}
	q := store.SignalQuery{Process: "orders", Signal: "amount", Since: now.Add(-7 * 24 * time.Hour).Truncate(time.Hour), Until: now.Add(time.Second), Bucket: time.Hour, Flagged: 20}
	b.ResetTimer()
	for b.Loop() {
		h, err := s.SignalHistory(ctx, q)
		if err != nil || h.Observations != n || len(h.Periods) < 168 || len(h.Flagged) != 20 || h.Latest == nil {
			b.Fatalf("history: %d observations, %d periods, %d flagged, %v", h.Observations, len(h.Periods), len(h.Flagged), err)
		}
	}
}

// BenchmarkPrune measures a prune on PostgreSQL: 100,000 instances that
// ended before the cut (each with 5 decision records; one in five with a
// review) among 100,000 that ended after it, 500,000 observations of 10
// signals before it and 100,000 audit entries. It reports the rows
// removed per second and the time of the whole prune.
func BenchmarkPrune(b *testing.B) {
	s, conn := openBenchConn(b)
	ctx := b.Context()
	now := time.Now()
	cut := now.Add(-400 * 24 * time.Hour)
	const n = 100_000
	rec := string(process.JSON(benchDecision("x", 1)))
	load := func(table string, cols []string, rows int, row func(i int) []any) {
		copied, err := conn.CopyFrom(ctx, pgx.Identifier{table}, cols, pgx.CopyFromSlice(rows, func(i int) ([]any, error) { return row(i), nil }))
		if err != nil || copied != int64(rows) {
			b.Fatalf("load %s: %d rows, %v", table, copied, err)
		}
	}
	var removed int64
	var took time.Duration
	for b.Loop() {
		b.StopTimer()
		// Instance i ended before the cut when i is even.
		ended := func(i int) int64 {
			return cut.Add(time.Duration(1-2*(i%2)) * time.Duration(i+1) * time.Second).UnixMicro()
		}
		load("instances", []string{"id", "process", "process_version", "business_key", "input", "created_by", "created_at", "status", "finished_at"}, 2*n, func(i int) []any {
			return []any{fmt.Sprint("i-", i), "orders", 1, fmt.Sprint("k-", i), `{}`, "bench", ended(i) - 3600e6, "completed", ended(i)}
		})
		load("decisions", []string{"id", "instance_id", "run_id", "seq", "step", "time", "record", "prev_hash", "hash", "process"}, 10*n, func(i int) []any {
			return []any{fmt.Sprint("dc-", i), fmt.Sprint("i-", i/5), fmt.Sprint("r-", i/5), int32(i%5 + 1), "pack", ended(i/5) - 60e6, rec, "", "h", "orders"}
		})
		load("reviews", []string{"id", "instance_id", "run_id", "process", "step", "queue", "reason", "status", "created_at", "decided_at"}, 2*n/5, func(i int) []any {
			return []any{fmt.Sprint("rv-", i), fmt.Sprint("i-", 5*i), fmt.Sprint("r-", 5*i), "orders", "pack", "ops", "big", "decided", ended(5*i) - 120e6, ended(5*i) - 60e6}
		})
		load("observations", []string{"process", "signal", "at", "value", "instance_id", "score"}, 5*n, func(i int) []any {
			return []any{"orders", fmt.Sprint("s-", i%10), cut.Add(-time.Duration(i+1) * time.Second).UnixMicro(), 1.0, fmt.Sprint("o-", i), 0.1}
		})
		load("audit_log", []string{"at", "key_id", "actor", "role", "action", "target", "status", "remote", "request_id"}, n, func(i int) []any {
			return []any{cut.Add(-time.Duration(i+1) * time.Second).UnixMicro(), "k", "ann", "admin", "POST /v1/keys", "", 201, "", ""}
		})
		if _, err := conn.Exec(ctx, "ANALYZE"); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		p, err := s.Prune(ctx, cut)
		took += time.Since(start)
		if err != nil || p.Instances != n || p.Decisions != 5*n || p.Reviews != n/5 || p.Observations != 5*n || p.AuditEntries != n {
			b.Fatalf("pruned %+v, %v", p, err)
		}
		removed += p.Total()
		b.StopTimer()
		if _, err := conn.Exec(ctx, "TRUNCATE instances, decisions, reviews, observations, audit_log"); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(removed)/took.Seconds(), "rows/s")
	b.ReportMetric(took.Seconds()/float64(b.N), "s/prune")
}

// BenchmarkExamplesPage measures GET /v1/classifiers/{name}/examples's
// reads for a classifier with 20,000 examples (77 labels, an imported set)
// among 100,000 of five classifiers: the newest page of 100, the next
// page, one label's page, a search of the texts, and the count of each
// label (every read of the listing has it).
func BenchmarkExamplesPage(b *testing.B) {
	s, conn := openBenchConn(b)
	ctx := b.Context()
	const n = 100_000
	t0 := time.Now().UTC().Add(-30 * 24 * time.Hour)
	copied, err := conn.CopyFrom(ctx, pgx.Identifier{"examples"},
		[]string{"id", "classifier", "text", "label", "fields", "source", "created_at"},
		pgx.CopyFromSlice(n, func(i int) ([]any, error) {
			return []any{fmt.Sprintf("ex%06d", i), fmt.Sprintf("desk-%d", i%5), fmt.Sprintf("message %d: where is my card, it has not arrived yet", i),
				fmt.Sprintf("intent_%d", i%77), "", "api:importer", t0.Add(time.Duration(i) * time.Second).UnixMicro()}, nil
		}))
	if err != nil || copied != n {
		b.Fatalf("copied %d: %v", copied, err)
	}
	if _, err := conn.Exec(ctx, "VACUUM ANALYZE examples"); err != nil {
		b.Fatal(err)
	}
	first, err := s.ExamplesPage(ctx, store.ExampleFilter{Classifier: "desk-0", Limit: 100})
	if err != nil || len(first) != 100 {
		b.Fatalf("%d examples: %v", len(first), err)
	}
	for _, c := range []struct {
		name string
		f    store.ExampleFilter
		want int
	}{
		{"newest", store.ExampleFilter{}, 100},
		{"next", store.ExampleFilter{After: store.ExampleCursor(first[99])}, 100},
		{"label", store.ExampleFilter{Label: "intent_5"}, 100},
		{"search", store.ExampleFilter{Text: "MESSAGE 4240:"}, 1},
	} {
		c.f.Classifier, c.f.Limit = "desk-0", 100
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				page, err := s.ExamplesPage(ctx, c.f)
				if err != nil || len(page) != c.want {
					b.Fatalf("%d examples, want %d: %v", len(page), c.want, err)
				}
			}
		})
	}
	b.Run("counts", func(b *testing.B) {
		for b.Loop() {
			counts, err := s.ExampleCounts(ctx, "desk-0")
			if err != nil || len(counts) != 77 {
				b.Fatalf("%d labels: %v", len(counts), err)
			}
		}
	})
}
