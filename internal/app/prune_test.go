package app

import (
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/adaptflow/adaptflow/api"
	"github.com/adaptflow/adaptflow/policies"
	"github.com/adaptflow/adaptflow/store"
	"github.com/adaptflow/adaptflow/store/sqlite"
)

// TestRunPrunes: a server with --store-retention prunes what is older
// than it, and counts the rows it removed.
func TestRunPrunes(t *testing.T) {
	ctx := t.Context()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "adaptflow.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	if err := st.AppendObservations(ctx, store.Observation{Process: "shop", Signal: "amount", At: now.Add(-3 * 24 * time.Hour), Value: 1, InstanceID: "a"},
		store.Observation{Process: "shop", Signal: "amount", At: now.Add(-47 * time.Hour), Value: 2, InstanceID: "b"},
		store.Observation{Process: "shop", Signal: "amount", At: now.Add(-time.Hour), Value: 3, InstanceID: "c"}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	lc := &lifecycle{logger: slog.New(slog.DiscardHandler)}
	bg := newBackground(st, "replica-1", slog.New(slog.DiscardHandler), reg)
	runPrunes(ctx, lc, bg, st, 2*24*time.Hour, slog.New(slog.DiscardHandler), reg, time.Millisecond)
	deadline := time.Now().Add(10 * time.Second)
	for {
		obs, err := st.Observations(ctx, "shop", "amount", time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if len(obs) == 2 {
			if obs[0].Value != 2 || obs[1].Value != 3 {
				t.Fatalf("kept %+v, want the observations of the last two days", obs)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d observations left, want 2", len(obs))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := lc.stop(ctx); err != nil {
		t.Fatal(err)
	}
	const want = `
# HELP adaptflow_pruned_rows_total Rows removed from the store by pruning (--store-retention, or a definition's retention), by table.
# TYPE adaptflow_pruned_rows_total counter
adaptflow_pruned_rows_total{table="audit_log"} 0
adaptflow_pruned_rows_total{table="decisions"} 0
adaptflow_pruned_rows_total{table="instances"} 0
adaptflow_pruned_rows_total{table="observations"} 1
adaptflow_pruned_rows_total{table="reviews"} 0
adaptflow_pruned_rows_total{table="undelivered_webhooks"} 0
adaptflow_pruned_rows_total{table="verdicts"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "adaptflow_pruned_rows_total"); err != nil {
		t.Fatal(err)
	}
}

// A process whose definition has a retention of its own is pruned to it,
// with no store retention; another process keeps everything.
func TestRunPrunesAProcessRetention(t *testing.T) {
	ctx := t.Context()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "adaptflow.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	env, err := policies.NewEnv()
	if err != nil {
		t.Fatal(err)
	}
	for _, def := range []string{"name: admissions\nversion: 1\nretention: 1d\nsteps: [{id: a, kind: task, task: noop}]\n", "name: orders\nversion: 1\nsteps: [{id: a, kind: task, task: noop}]\n"} {
		if _, _, err := api.RegisterDefinition(ctx, st, env, []byte(def), "t"); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	for _, p := range []string{"admissions", "orders"} {
		if err := st.AppendObservations(ctx, store.Observation{Process: p, Signal: "amount", At: now.Add(-3 * 24 * time.Hour), Value: 1},
			store.Observation{Process: p, Signal: "amount", At: now.Add(-time.Hour), Value: 2}); err != nil {
			t.Fatal(err)
		}
	}
	reg := prometheus.NewRegistry()
	lc := &lifecycle{logger: slog.New(slog.DiscardHandler)}
	bg := newBackground(st, "replica-1", slog.New(slog.DiscardHandler), reg)
	runPrunes(ctx, lc, bg, st, 0, slog.New(slog.DiscardHandler), reg, time.Millisecond)
	deadline := time.Now().Add(10 * time.Second)
	for {
		obs, err := st.Observations(ctx, "admissions", "amount", time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if len(obs) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d observations of admissions left, want the last day's", len(obs))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := lc.stop(ctx); err != nil {
		t.Fatal(err)
	}
	if obs, err := st.Observations(ctx, "orders", "amount", time.Time{}); err != nil || len(obs) != 2 {
		t.Fatalf("orders (no retention) kept %d observations (%v), want both", len(obs), err)
	}
}
