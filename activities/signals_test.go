package activities_test

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/adaptflow/adaptflow/activities"
	"github.com/adaptflow/adaptflow/policies"
	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
	"github.com/adaptflow/adaptflow/store/sqlite"
)

const amountsDef = `
name: payouts
version: 1
input:
  properties:
    amount: {type: number}
signals:
  - {name: amount, kind: value, field: amount}
steps:
  - {id: pay, kind: task, task: noop}
  - {id: notify, kind: task, task: noop}
`

// signalActivities are the activities deciding for a definition on a
// SQLite store of their own.
func signalActivities(t *testing.T, defYAML string) (*activities.Activities, *sqlite.Store, *process.Definition) {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	def, err := process.ParseDefinition([]byte(defYAML))
	if err != nil {
		t.Fatal(err)
	}
	env, _ := policies.NewEnv()
	return &activities.Activities{Env: env, Policies: st, Decisions: st, Reviews: st, Starts: st, Detectors: st, Calendar: policies.DefaultCalendar()}, st, def
}

func TestValueSignal(t *testing.T) {
	acts, st, def := signalActivities(t, amountsDef)
	reg := prometheus.NewRegistry()
	acts.Metrics = activities.NewMetrics(reg)
	var logged syncBuffer
	acts.Logger = slog.New(slog.NewTextHandler(&logged, nil))
	decide := func(id string, seq int, amount float64) activities.DecideResult {
		t.Helper()
		res, err := acts.Decide(t.Context(), activities.DecideInput{Definition: def, InstanceID: id, RunID: "run-" + id, Seq: seq, Step: "pay",
			Now: time.Now(), Started: time.Now(), Input: map[string]any{"amount": amount}})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	first := decide("i0", 1, 100)
	if s := first.Signals["amount"]; !s.WarmingUp || s.Value != 100 || !strings.Contains(s.Reason, "after 150 more observations") {
		t.Fatalf("first observation %+v", s)
	}
	// Twenty workers decide for twenty instances at once: the shared
	// detector sees every one of them.
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			decide(fmt.Sprintf("c%d", i), 1, 100+float64(i%5))
		}()
	}
	wg.Wait()
	for i := range 300 {
		decide(fmt.Sprintf("w%d", i), 1, 100+float64(i%7))
	}
	obs, err := st.Observations(t.Context(), "payouts", "amount", time.Time{})
	if err != nil || len(obs) != 321 {
		t.Fatalf("%d observations, want 321 (none lost): %v", len(obs), err)
	}
	spike := decide("big", 1, 5000)
	if s := spike.Signals["amount"]; !s.Anomalous || s.WarmingUp || s.Score < 0.9 {
		t.Fatalf("outlier %+v", s)
	}
	// The log says so, for log-based alerting.
	if l := logged.String(); !strings.Contains(l, `msg="signal flagged an anomaly" process=payouts signal=amount value=5000`) || !strings.Contains(l, "instance=big") {
		t.Fatalf("the log:\n%s", l)
	}
	// A retried decision of the same instance gets the same verdict and is
	// not observed twice.
	again, err := acts.Decide(t.Context(), activities.DecideInput{Definition: def, InstanceID: "big", RunID: "run-big", Seq: 2, Step: "notify",
		Now: time.Now(), Started: time.Now(), Input: map[string]any{"amount": 5000.0}})
	if err != nil || !again.Signals["amount"].Anomalous {
		t.Fatalf("again %+v %v", again.Signals, err)
	}
	obs, err = st.Observations(t.Context(), "payouts", "amount", time.Time{})
	if err != nil || len(obs) != 322 {
		t.Fatalf("%d observations after a retry, want 322: %v", len(obs), err)
	}
	// Each observation is counted once, by verdict: the retry is not.
	counted := series(t, reg)
	label := func(verdict string) string {
		return `adaptflow_signal_observations_total{process=payouts,signal=amount,verdict=` + verdict + `}`
	}
	total := counted[label("warming_up")] + counted[label("anomalous")] + counted[label("usual")] + counted[label("recurring")]
	if counted[label("warming_up")] != 150 || counted[label("anomalous")] < 1 || total != 322 {
		t.Fatalf("observations counted: %v", counted)
	}
	// The history keeps each verdict as policies saw it, with its instance.
	last := obs[len(obs)-1]
	if v := last.Verdict; last.InstanceID != "big" || last.Value != 5000 || v == nil || !v.Anomalous || v.Score != spike.Signals["amount"].Score ||
		v.Expected != spike.Signals["amount"].Baseline.Expected || !strings.Contains(v.Reason, "5000 is unusual") {
		t.Fatalf("the spike's observation %+v %+v", last, last.Verdict)
	}
	if v := obs[0].Verdict; obs[0].InstanceID != "i0" || v == nil || !v.WarmingUp {
		t.Fatalf("the first observation %+v", obs[0])
	}
}

// An instance whose verdict has left the state's memory (many instances
// were observed since) is still observed once: its kept observation
// answers.
func TestValueSignalObservedOnceAfterMany(t *testing.T) {
	acts, st, def := signalActivities(t, amountsDef)
	reg := prometheus.NewRegistry()
	acts.Metrics = activities.NewMetrics(reg)
	decide := func(id string, seq int, step string, amount float64) policies.Signal {
		t.Helper()
		res, err := acts.Decide(t.Context(), activities.DecideInput{Definition: def, InstanceID: id, RunID: "run-" + id, Seq: seq, Step: step,
			Now: time.Now(), Started: time.Now(), Input: map[string]any{"amount": amount}})
		if err != nil {
			t.Fatal(err)
		}
		return res.Signals["amount"]
	}
	first := decide("x", 1, "pay", 42)
	for i := range 100 {
		decide(fmt.Sprint("o", i), 1, "pay", 40+float64(i%5))
	}
	// x decides again without the signal it was given (a reset to before
	// its first decision, say).
	if again := decide("x", 2, "notify", 42); again != first {
		t.Fatalf("x's signal again: %+v, first %+v", again, first)
	}
	var counted float64
	for name, v := range series(t, reg) {
		if strings.HasPrefix(name, "adaptflow_signal_observations_total") {
			counted += v
		}
	}
	obs, err := st.Observations(t.Context(), "payouts", "amount", time.Time{})
	if err != nil || len(obs) != 101 || counted != 101 {
		t.Fatalf("%d observations kept, %v counted, want 101 (x once): %v", len(obs), counted, err)
	}
}

// A decision that saved the detector's state and stopped before keeping
// the observation (a crash) keeps it when it is retried.
func TestValueSignalKeptAfterACrash(t *testing.T) {
	acts, _, def := signalActivities(t, amountsDef)
	path := filepath.Join(t.TempDir(), "s.db")
	st, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	acts.Detectors = st
	decide := func() activities.DecideResult {
		t.Helper()
		res, err := acts.Decide(t.Context(), activities.DecideInput{Definition: def, InstanceID: "i1", RunID: "run-i1", Seq: 1, Step: "pay",
			Now: time.Now(), Started: time.Now(), Input: map[string]any{"amount": 70.0}})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	decide()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(t.Context(), `DELETE FROM observations`); err != nil { // as if the attempt stopped before it
		t.Fatal(err)
	}
	if obs, err := st.Observations(t.Context(), "payouts", "amount", time.Time{}); err != nil || len(obs) != 0 {
		t.Fatalf("after the crash: %+v, %v", obs, err)
	}
	decide()
	obs, err := st.Observations(t.Context(), "payouts", "amount", time.Time{})
	if err != nil || len(obs) != 1 || obs[0].InstanceID != "i1" || obs[0].Value != 70 || obs[0].Verdict == nil || !obs[0].Verdict.WarmingUp {
		t.Fatalf("after the retry: %+v, %v", obs, err)
	}
}

const ordersDef = `
name: orders
version: 1
signals:
  - {name: order_volume, kind: arrival_rate}
steps:
  - {id: pick, kind: task, task: noop}
`

// orderVolume is the order_volume signal in the facts of a decision of
// instance id at now.
func orderVolume(t *testing.T, acts *activities.Activities, st *sqlite.Store, def *process.Definition, id string, now time.Time) policies.Signal {
	t.Helper()
	res, err := acts.Decide(t.Context(), activities.DecideInput{Definition: def, InstanceID: id, RunID: "run-" + id, Seq: 1, Step: "pick", Now: now, Started: now})
	if err != nil {
		t.Fatal(err)
	}
	d, err := st.Decision(t.Context(), res.DecisionID)
	if err != nil {
		t.Fatal(err)
	}
	var facts policies.Facts
	if err := json.Unmarshal(d.Facts, &facts); err != nil {
		t.Fatal(err)
	}
	return facts.Signals["order_volume"]
}

// The arrival rate learns the weekly rhythm: the usual weekday-morning
// peak is not an anomaly, the same rate at night is; with little history
// it says it is warming up and for how long.
func TestArrivalRateLearnsTheWeeklyRhythm(t *testing.T) {
	monday := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC) // a Monday
	// Three weeks of starts at random times: 30 an hour on average from 9
	// to 17 on weekdays, 2 an hour otherwise.
	rng := rand.New(rand.NewPCG(1, 2))
	n := 0
	history := func(st *sqlite.Store, process string, from, to time.Time) {
		t.Helper()
		for h := from; h.Before(to); h = h.Add(time.Minute) {
			perHour := 2.0
			if wd := h.Weekday(); wd != time.Saturday && wd != time.Sunday && h.Hour() >= 9 && h.Hour() < 17 {
				perHour = 30
			}
			if rng.Float64() < perHour/60 {
				n++
				id := fmt.Sprintf("%s-%d", process, n)
				at := h.Add(time.Duration(rng.Int64N(int64(time.Minute))))
				if _, _, err := st.CreateInstance(t.Context(), store.Instance{ID: id, Process: process, ProcessVersion: 1, BusinessKey: id, Input: []byte(`{}`), CreatedAt: at}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	acts, st, def := signalActivities(t, ordersDef)
	reg := prometheus.NewRegistry()
	acts.Metrics = activities.NewMetrics(reg)
	rate := func(id string, now time.Time) policies.Signal { return orderVolume(t, acts, st, def, id, now) }
	start := monday.Add(-21 * 24 * time.Hour)
	history(st, "orders", start, start.Add(3*time.Hour))
	if s := rate("early", start.Add(3*time.Hour+5*time.Minute)); !s.WarmingUp || !strings.Contains(s.Reason, "more hours of history") {
		t.Fatalf("after three hours: %+v", s)
	}
	history(st, "orders", start.Add(3*time.Hour), monday.Add(10*time.Hour))
	peak := rate("peak", monday.Add(10*time.Hour+5*time.Minute))
	if peak.WarmingUp || peak.Anomalous || peak.Value < 15 || peak.Value > 45 || peak.Baseline.Expected < 20 || peak.Baseline.Expected > 40 {
		t.Fatalf("the usual Monday-morning peak: %+v", peak)
	}
	// The same rate at three in the morning is a surge.
	night := monday.Add(3 * time.Hour)
	def.Name = "night"
	history(st, "night", start, night)
	for i := range 30 {
		id := fmt.Sprintf("surge-%d", i)
		if _, _, err := st.CreateInstance(t.Context(), store.Instance{ID: id, Process: "night", ProcessVersion: 1, BusinessKey: id, Input: []byte(`{}`), CreatedAt: night.Add(time.Duration(i) * time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	surge := rate("surge", night.Add(35*time.Minute))
	if !surge.Anomalous || surge.Value < 30 || surge.Baseline.Expected > 5 || !strings.Contains(surge.Reason, "unusual") {
		t.Fatalf("30 starts in half an hour at night: %+v", surge)
	}
	// Its history holds every ten-minute boundary once, in order, each with
	// the verdict of its time; the latest is the surge.
	obs, err := st.Observations(t.Context(), "night", "order_volume", time.Time{})
	if err != nil || len(obs) < 3*7*144 {
		t.Fatalf("%d boundaries observed in three weeks: %v", len(obs), err)
	}
	for i := 1; i < len(obs); i++ {
		if obs[i].At.Sub(obs[i-1].At) != 10*time.Minute || obs[i].InstanceID != "" || obs[i].Verdict == nil {
			t.Fatalf("boundaries %d and %d: %+v, %+v", i-1, i, obs[i-1], obs[i])
		}
	}
	last := obs[len(obs)-1]
	if !last.At.Equal(night.Add(30*time.Minute)) || last.Value != surge.Value || !last.Verdict.Anomalous || last.Verdict.Reason != surge.Reason {
		t.Fatalf("the latest boundary %s: %+v %+v", last.At, last, last.Verdict)
	}
	if !obs[0].Verdict.WarmingUp {
		t.Fatalf("the first boundary %+v", obs[0].Verdict)
	}
	// Each boundary is counted once, the surge among the anomalous.
	var counted, anomalous float64
	for name, v := range series(t, reg) {
		if strings.Contains(name, "process=night,signal=order_volume") {
			counted += v
			if strings.Contains(name, "verdict=anomalous") {
				anomalous = v
			}
		}
	}
	if int(counted) != len(obs) || anomalous < 1 {
		t.Fatalf("%v boundaries counted (%v anomalous), %d observed", counted, anomalous, len(obs))
	}
}

// A start stored with a time just before a boundary and committed just
// after it is counted: a boundary is observed only once it has settled.
func TestArrivalRateCountsStartsCommittedAfterTheBoundary(t *testing.T) {
	acts, st, def := signalActivities(t, ordersDef)
	boundary := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	start := func(id string, at time.Time) {
		t.Helper()
		if _, _, err := st.CreateInstance(t.Context(), store.Instance{ID: id, Process: "orders", ProcessVersion: 1, BusinessKey: id, Input: []byte(`{}`), CreatedAt: at}); err != nil {
			t.Fatal(err)
		}
	}
	rate := func(id string, now time.Time) policies.Signal { return orderVolume(t, acts, st, def, id, now) }
	start("a", boundary.Add(-30*time.Minute))
	start("b", boundary.Add(-25*time.Minute))
	if s := rate("first", boundary.Add(30*time.Second)); s.Value != 2 {
		t.Fatalf("half a minute after the boundary: %+v", s)
	}
	start("late", boundary.Add(-time.Second)) // its row commits now
	if s := rate("second", boundary.Add(2*time.Minute)); s.Value != 3 {
		t.Fatalf("the hour before %s holds 3 starts: %+v", boundary.Format("15:04"), s)
	}
}

// BenchmarkArrivalRateFirstObservation is the first decision of a process
// with an arrival-rate signal and five weeks of starts (about 34,000): the
// new detector learns from all of them.
func BenchmarkArrivalRateFirstObservation(b *testing.B) {
	st, err := sqlite.Open(b.Context(), filepath.Join(b.TempDir(), "r.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	end := time.Date(2026, 11, 23, 10, 5, 0, 0, time.UTC)
	rng := rand.New(rand.NewPCG(1, 2))
	n := 0
	for at := end.Add(-35 * 24 * time.Hour); at.Before(end); at = at.Add(time.Duration(rng.ExpFloat64() * float64(90*time.Second))) {
		n++
		id := fmt.Sprintf("o-%d", n)
		if _, _, err := st.CreateInstance(b.Context(), store.Instance{ID: id, Process: "orders", ProcessVersion: 1, BusinessKey: id, Input: []byte(`{}`), CreatedAt: at}); err != nil {
			b.Fatal(err)
		}
	}
	env, _ := policies.NewEnv()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		def, err := process.ParseDefinition([]byte(strings.Replace(ordersDef, "order_volume", fmt.Sprintf("volume_%d", i), 1)))
		if err != nil {
			b.Fatal(err)
		}
		acts := &activities.Activities{Env: env, Policies: st, Decisions: st, Reviews: st, Starts: st, Detectors: st, Calendar: policies.DefaultCalendar()}
		id := fmt.Sprintf("d-%d", i)
		if _, err := acts.Decide(b.Context(), activities.DecideInput{Definition: def, InstanceID: id, RunID: "run-" + id, Seq: 1, Step: "pick", Now: end, Started: end}); err != nil {
			b.Fatal(err)
		}
	}
}

// syncBuffer is a buffer the log may write to from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
