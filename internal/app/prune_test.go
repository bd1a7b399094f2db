package app

import (
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

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
# HELP adaptflow_pruned_rows_total Rows removed from the store by pruning (--store-retention), by table.
# TYPE adaptflow_pruned_rows_total counter
adaptflow_pruned_rows_total{table="audit_log"} 0
adaptflow_pruned_rows_total{table="decisions"} 0
adaptflow_pruned_rows_total{table="instances"} 0
adaptflow_pruned_rows_total{table="observations"} 1
adaptflow_pruned_rows_total{table="reviews"} 0
adaptflow_pruned_rows_total{table="verdicts"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "adaptflow_pruned_rows_total"); err != nil {
		t.Fatal(err)
	}
}
