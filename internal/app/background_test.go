package app

import (
	"context"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/adaptflow/adaptflow/store/sqlite"
)

// replica is one API replica's background tasks, for the tests: its
// lifecycle, its metrics, and how often its task ran.
type replica struct {
	lc   *lifecycle
	reg  *prometheus.Registry
	runs atomic.Int64
}

func openLeases(t *testing.T) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "adaptflow.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// startReplica schedules the task "sweeper" every 5 ms with a lease of ttl
// in a replica named name; run, when given, runs after the count.
func startReplica(t *testing.T, st leaser, name string, ttl time.Duration, run func(ctx context.Context) error) *replica {
	t.Helper()
	return startReplicaAt(t, st, name, ttl, 0, run)
}

// startReplicaAt is startReplica in a replica whose clock is skew off
// the store's (and the machine's).
func startReplicaAt(t *testing.T, st leaser, name string, ttl, skew time.Duration, run func(ctx context.Context) error) *replica {
	t.Helper()
	r := &replica{lc: &lifecycle{logger: slog.New(slog.DiscardHandler)}, reg: prometheus.NewRegistry()}
	bg := newBackground(st, name, slog.New(slog.DiscardHandler), r.reg)
	bg.local = func() time.Time { return time.Now().Add(skew) }
	bg.start(t.Context(), r.lc, task{name: "sweeper", every: 5 * time.Millisecond, ttl: ttl, run: func(ctx context.Context) error {
		r.runs.Add(1)
		if run != nil {
			return run(ctx)
		}
		return nil
	}})
	t.Cleanup(func() { _ = r.lc.stop(context.Background()) })
	return r
}

// waitFor polls cond until it holds, or fails the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// metric is the value of the gauge or counter name in r whose labels
// include the pairs given.
func metric(t *testing.T, r *replica, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == labels[i] && l.GetValue() == labels[i+1] }) {
					continue next
				}
			}
			return m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no %s%v", name, labels)
	return 0
}

// TestBackgroundTasksRunInOneReplicaAtATime: of two API replicas on one store, one
// runs the background tasks; when it stops, the other takes them over at
// once, without waiting for its lease to expire.
func TestBackgroundTasksRunInOneReplicaAtATime(t *testing.T) {
	st := openLeases(t)
	a := startReplica(t, st, "a", time.Hour, nil)
	b := startReplica(t, st, "b", time.Hour, nil)
	waitFor(t, "20 runs", func() bool { return a.runs.Load()+b.runs.Load() >= 20 })
	leader, other := a, b
	if b.runs.Load() > 0 {
		leader, other = b, a
	}
	if other.runs.Load() != 0 {
		t.Fatalf("both replicas ran the task: %d and %d times", a.runs.Load(), b.runs.Load())
	}
	if l, o := metric(t, leader, "adaptflow_background_task_leader"), metric(t, other, "adaptflow_background_task_leader"); l != 1 || o != 0 {
		t.Fatalf("adaptflow_background_task_leader: %v for the replica that runs the task, %v for the other", l, o)
	}
	if err := testutil.GatherAndCompare(leader.reg, strings.NewReader(`
# HELP adaptflow_background_task_interval_seconds How often a background task runs.
# TYPE adaptflow_background_task_interval_seconds gauge
adaptflow_background_task_interval_seconds{task="sweeper"} 0.005
`), "adaptflow_background_task_interval_seconds"); err != nil {
		t.Fatal(err)
	}
	if n := metric(t, leader, "adaptflow_background_task_runs_total", "outcome", "ok"); n < 20 {
		t.Fatalf("adaptflow_background_task_runs_total{outcome=ok} = %v, want the %d runs", n, leader.runs.Load())
	}
	if at := metric(t, leader, "adaptflow_background_task_last_success_timestamp_seconds"); time.Since(time.Unix(int64(at), 0)) > time.Minute {
		t.Fatalf("adaptflow_background_task_last_success_timestamp_seconds = %v", at)
	}

	if err := leader.lc.stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	ran := leader.runs.Load()
	waitFor(t, "the other replica to take the task over", func() bool { return other.runs.Load() > 0 })
	if leader.runs.Load() != ran {
		t.Fatal("the stopped replica ran the task again")
	}
	waitFor(t, "the new leader's gauge", func() bool { return metric(t, other, "adaptflow_background_task_leader") == 1 })
}

// TestSkewedClocksShareALease: replicas whose clocks are minutes apart
// still run a task one at a time, and hand it on when its holder stops:
// the leases go by the store's clock. (Were each to go by its own, the
// lease of the replica behind would look expired to the other at once,
// and both would run the task; the one ahead would hold it for minutes
// after it died.)
func TestSkewedClocksShareALease(t *testing.T) {
	st := openLeases(t)
	behind := startReplicaAt(t, st, "behind", time.Minute, -10*time.Minute, nil)
	waitFor(t, "the replica behind to run the task", func() bool { return behind.runs.Load() > 0 })
	ahead := startReplicaAt(t, st, "ahead", time.Minute, 10*time.Minute, nil)
	waitFor(t, "20 more runs", func() bool { return behind.runs.Load() >= 20 })
	if n := ahead.runs.Load(); n != 0 {
		t.Fatalf("the replica ahead ran the task %d times beside its holder", n)
	}
	if err := behind.lc.stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the replica ahead to take the task over", func() bool { return ahead.runs.Load() > 0 })
	// Its lease, written by the store's clock, is a minute long.
	l, err := st.TakeLease(t.Context(), "sweeper", "probe", time.Now(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if l.Holder != "ahead" || l.Expires.After(time.Now().Add(time.Minute+time.Second)) {
		t.Fatalf("the lease of the replica ahead: %+v, want it held until about a minute from now", l)
	}
}

// TestTaskOfADeadReplicaIsTakenOver: a replica that died holding a task's
// lease (it never gave it up) hands the task on when the lease expires.
func TestTaskOfADeadReplicaIsTakenOver(t *testing.T) {
	st := openLeases(t)
	l, err := st.TakeLease(t.Context(), "sweeper", "dead", time.Now(), 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	var first atomic.Int64
	startReplica(t, st, "b", time.Hour, func(context.Context) error {
		first.CompareAndSwap(0, time.Now().UnixMicro())
		return nil
	})
	waitFor(t, "the task to run again", func() bool { return first.Load() != 0 })
	if at := time.UnixMicro(first.Load()); at.Before(l.Expires) {
		t.Fatalf("the task ran at %s, before the dead replica's lease expired at %s", at, l.Expires)
	}
}

// TestLongRunKeepsItsLease: a run that outlasts the lease renews it, so
// no other replica runs the task meanwhile; a run whose lease is taken
// from it (its replica stalled past the lease) is stopped.
func TestLongRunKeepsItsLease(t *testing.T) {
	st := openLeases(t)
	// Renewed every third of it: long enough that a loaded machine (the
	// race detector, other tests) renews in time.
	const ttl = 600 * time.Millisecond
	// Buffered: a's first run may come before the test waits for it (a
	// loaded machine), and must still be the one that holds on.
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	stopped := make(chan error, 1)
	a := startReplica(t, st, "a", ttl, func(ctx context.Context) error {
		select {
		case started <- struct{}{}:
		default:
			return nil
		}
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			stopped <- ctx.Err()
			return ctx.Err()
		}
	})
	<-started
	b := startReplica(t, st, "b", ttl, nil)
	// Three lease periods: without renewals b, which tries every 5 ms,
	// would have taken the task over.
	time.Sleep(3 * ttl)
	if n := b.runs.Load(); n != 0 {
		t.Fatalf("another replica ran the task %d times while a run held its lease", n)
	}

	// a stalls past its lease (as c's clock reads), and c takes it; a's
	// next renewal stops its run.
	if l, err := st.TakeLease(t.Context(), "sweeper", "c", time.Now().Add(time.Hour), time.Hour); err != nil || l.Holder != "c" {
		t.Fatalf("c took %+v, %v", l, err)
	}
	select {
	case err := <-stopped:
		if err == nil {
			t.Fatal("stopped with no error")
		}
	case <-time.After(10 * time.Second):
		close(release)
		t.Fatal("the run went on after its lease was taken")
	}
	if a.runs.Load() != 1 || b.runs.Load() != 0 {
		t.Fatalf("runs: a %d, b %d; want 1 and 0 while c holds the lease", a.runs.Load(), b.runs.Load())
	}
}

// TestRestartedReplicaTakesItsLeaseBack: a replica that restarts in place
// (the same name: its host and address) runs its tasks again at once,
// without waiting for the lease its crashed run left to expire.
func TestRestartedReplicaTakesItsLeaseBack(t *testing.T) {
	st := openLeases(t)
	if _, err := st.TakeLease(t.Context(), "sweeper", replicaName("127.0.0.1:8080"), time.Now(), time.Hour); err != nil {
		t.Fatal(err)
	}
	r := startReplica(t, st, replicaName("127.0.0.1:8080"), time.Hour, nil)
	waitFor(t, "the restarted replica to run its task", func() bool { return r.runs.Load() > 0 })
	other := startReplica(t, st, replicaName("127.0.0.1:8081"), time.Hour, nil)
	waitFor(t, "more runs", func() bool { return r.runs.Load() > 5 })
	if other.runs.Load() != 0 {
		t.Fatal("another process on the host ran the task too")
	}
}

// Every API replica says in the store that it is alive; each counts the
// live ones, which share the keys' rate limits. One that stops is counted
// out at once; one that died, when its lease expires.
func TestReplicasCountEachOther(t *testing.T) {
	st := openLeases(t)
	type counted struct {
		lc *lifecycle
		n  atomic.Int64
	}
	start := func(name string, every time.Duration) *counted {
		c := &counted{lc: &lifecycle{logger: slog.New(slog.DiscardHandler)}}
		bg := newBackground(st, name, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
		bg.countReplicas(t.Context(), c.lc, every, func(n int) { c.n.Store(int64(n)) })
		t.Cleanup(func() { _ = c.lc.stop(context.Background()) })
		return c
	}
	// Renewed every 20 ms, lasting 60: a loaded machine may let one lapse
	// a moment, which the checks below wait out.
	a, b := start("a", 20*time.Millisecond), start("b", 20*time.Millisecond)
	// A replica that died a moment ago: its lease runs out soon.
	if _, err := st.TakeLease(t.Context(), replicaLeases+"ghost", "ghost", time.Now(), 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both to count three", func() bool { return a.n.Load() == 3 && b.n.Load() == 3 })
	waitFor(t, "the dead one to be counted out", func() bool { return a.n.Load() == 2 && b.n.Load() == 2 })
	// c counts once, at its start, and holds a lease of three hours.
	c := start("c", time.Hour)
	waitFor(t, "a new one to be counted in", func() bool { return a.n.Load() == 3 && c.n.Load() == 3 })
	if err := c.lc.stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	// c gave its lease up, hours before it would have run out.
	live, err := st.LiveLeases(t.Context(), replicaLeases, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range live {
		if l.Holder == "c" {
			t.Fatalf("c's lease outlived it: %+v", l)
		}
	}
	waitFor(t, "the others to count c out", func() bool { return a.n.Load() == 2 && b.n.Load() == 2 })
}
