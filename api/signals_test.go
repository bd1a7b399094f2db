package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/adaptflow/adaptflow/store"
)

const signalsDef = `name: orders
version: 1
input: {properties: {amount: {type: number}}}
signals:
  - {name: order_volume, kind: arrival_rate}
  - {name: amount, kind: value, field: amount}
  - {name: pick_time, kind: duration, step: pick}
steps: [{id: pick, kind: task, task: noop}]
`

// signalsAnswer is the part of GET /v1/processes/{name}/signals the test
// reads.
type signalsAnswer struct {
	Version       int
	Since         time.Time
	BucketSeconds float64 `json:"bucket_seconds"`
	Signals       []struct {
		Name, Kind, Field, Step string
		Observations, Anomalous int
		Latest                  *struct {
			At         time.Time
			Value      float64
			InstanceID string `json:"instance_id"`
			Verdict    *store.SignalVerdict
		}
		Periods []store.SignalPeriod
		Flagged []struct {
			At         time.Time
			Value      float64
			InstanceID string `json:"instance_id"`
			Verdict    store.SignalVerdict
		}
	}
}

func TestProcessSignals(t *testing.T) {
	srv, keys, st := newServerAt(t, filepath.Join(t.TempDir(), "api.db"))
	eng := keys[store.RoleEngineer]
	if a := do(t, srv, "POST", "/v1/processes", eng, "application/yaml", signalsDef); a.status != http.StatusCreated {
		t.Fatalf("register: %d %+v", a.status, a.err)
	}
	// Two days of amounts, one instance every ten minutes, three flagged;
	// the arrival rate at every boundary of the last day, quiet. pick_time
	// has none yet.
	now := time.Now().UTC().Truncate(10 * time.Minute)
	var obs []store.Observation
	for i := range 2 * 144 {
		at := now.Add(-time.Duration(i) * 10 * time.Minute)
		v := store.SignalVerdict{Expected: 100, Low: 80, High: 120, Reason: "within"}
		amount := 100.0
		if i%100 == 7 {
			amount, v.Anomalous, v.Score, v.Reason = 900, true, 0.99, "900 is unusual"
		}
		obs = append(obs, store.Observation{Process: "orders", Signal: "amount", At: at.Add(-time.Minute), Value: amount, InstanceID: fmt.Sprint("o-", i), Verdict: &v})
		if i < 144 {
			obs = append(obs, store.Observation{Process: "orders", Signal: "order_volume", At: at, Value: 6, Verdict: &store.SignalVerdict{Expected: 6, Low: 2, High: 10}})
		}
	}
	if err := st.AppendObservations(t.Context(), obs...); err != nil {
		t.Fatal(err)
	}
	get := func(query string) signalsAnswer {
		t.Helper()
		a := do(t, srv, "GET", "/v1/processes/orders/signals"+query, eng, "", "")
		if a.status != http.StatusOK {
			t.Fatalf("signals%s: %d %+v", query, a.status, a.err)
		}
		var rep signalsAnswer
		raw, _ := json.Marshal(a.body)
		if err := json.Unmarshal(raw, &rep); err != nil {
			t.Fatal(err)
		}
		return rep
	}
	rep := get("?since=1d&bucket=6h")
	if rep.Version != 1 || rep.BucketSeconds != 6*3600 || len(rep.Signals) != 3 || rep.Since.Hour()%6 != 0 || !rep.Since.Equal(rep.Since.Truncate(time.Hour)) {
		t.Fatalf("report: %+v", rep)
	}
	volume, amount, pick := rep.Signals[0], rep.Signals[1], rep.Signals[2]
	if volume.Name != "order_volume" || volume.Kind != "arrival_rate" || volume.Observations < 143 || volume.Anomalous != 0 ||
		volume.Latest == nil || volume.Latest.Value != 6 || volume.Latest.InstanceID != "" || len(volume.Flagged) != 0 {
		t.Fatalf("order_volume: %+v", volume)
	}
	// In the last day: flagged at i = 7 and 107, newest first.
	if amount.Field != "amount" || amount.Observations < 143 || amount.Anomalous != 2 || len(amount.Flagged) != 2 ||
		amount.Flagged[0].InstanceID != "o-7" || amount.Flagged[1].InstanceID != "o-107" || amount.Flagged[0].Value != 900 ||
		!amount.Flagged[0].Verdict.Anomalous || amount.Flagged[0].Verdict.Reason != "900 is unusual" {
		t.Fatalf("amount: %+v", amount)
	}
	if amount.Latest == nil || amount.Latest.InstanceID != "o-0" || amount.Latest.Verdict == nil || amount.Latest.Verdict.Expected != 100 {
		t.Fatalf("amount's latest: %+v", amount.Latest)
	}
	total, flagged := 0, 0
	for i, p := range amount.Periods {
		total += p.Observations
		flagged += p.Anomalous
		if p.Baseline == nil || p.Baseline.Low != 80 || p.Min != 100 && p.Min != 900 || i > 0 && !p.Start.After(amount.Periods[i-1].Start) {
			t.Fatalf("period %d: %+v", i, p)
		}
	}
	if len(amount.Periods) < 4 || len(amount.Periods) > 5 || total != amount.Observations || flagged != 2 {
		t.Fatalf("periods %+v", amount.Periods)
	}
	if pick.Step != "pick" || pick.Observations != 0 || pick.Latest != nil || len(pick.Periods) != 0 {
		t.Fatalf("pick_time, never observed: %+v", pick)
	}
	// Two days hold the third flagged amount; flagged=1 lists only the newest.
	if rep := get("?since=2d&flagged=1"); rep.Signals[1].Anomalous != 3 || len(rep.Signals[1].Flagged) != 1 || rep.Signals[1].Flagged[0].InstanceID != "o-7" {
		t.Fatalf("two days, one flagged: %+v", rep.Signals[1])
	}
	for query, field := range map[string]string{"?since=soon": "since", "?bucket=1m&since=30d": "bucket", "?flagged=5000": "flagged", "?version=0": "version"} {
		if a := do(t, srv, "GET", "/v1/processes/orders/signals"+query, eng, "", ""); a.status != http.StatusBadRequest || a.err.Field != field {
			t.Fatalf("%s: %d %+v", query, a.status, a.err)
		}
	}
	if a := do(t, srv, "GET", "/v1/processes/orders/signals?version=2", eng, "", ""); a.status != http.StatusNotFound {
		t.Fatalf("an unknown version: %d %+v", a.status, a.err)
	}
	if a := do(t, srv, "GET", "/v1/processes/nope/signals", eng, "", ""); a.status != http.StatusNotFound {
		t.Fatalf("an unknown process: %d %+v", a.status, a.err)
	}
	if a := do(t, srv, "GET", "/v1/processes/orders/signals", keys[store.RoleReviewer], "", ""); a.status != http.StatusForbidden {
		t.Fatalf("a reviewer: %d %+v", a.status, a.err)
	}
	// The raw observations, a page at a time, oldest first: the 289
	// amounts (2 days and the one at the window's end), or the 3 flagged.
	var all []map[string]any
	next := "/v1/processes/orders/signals/amount/observations?limit=100"
	for next != "" {
		a := do(t, srv, "GET", next, eng, "", "")
		if a.status != http.StatusOK {
			t.Fatalf("%s: %d %+v", next, a.status, a.err)
		}
		for _, o := range a.body["observations"].([]any) {
			all = append(all, o.(map[string]any))
		}
		next = ""
		if n, ok := a.body["next"].(string); ok {
			next = "/v1/processes/orders/signals/amount/observations?limit=100&after=" + n
		}
	}
	if len(all) != 2*144 || all[0]["instance_id"] != "o-287" || all[len(all)-1]["instance_id"] != "o-0" {
		t.Fatalf("%d observations, first %v, last %v", len(all), all[0], all[len(all)-1])
	}
	flaggedAll := do(t, srv, "GET", "/v1/processes/orders/signals/amount/observations?anomalous=true&since=30d", eng, "", "")
	if flaggedAll.status != http.StatusOK {
		t.Fatalf("the flagged ones: %d %+v", flaggedAll.status, flaggedAll.err)
	}
	if list := flaggedAll.body["observations"].([]any); len(list) != 3 || list[0].(map[string]any)["instance_id"] != "o-207" || flaggedAll.body["next"] != nil {
		t.Fatalf("the flagged ones: %v", flaggedAll.body)
	}
	for query, field := range map[string]string{"?anomalous=maybe": "anomalous", "?limit=0": "limit", "?after=garbage": "after", "?since=soon": "since"} {
		if a := do(t, srv, "GET", "/v1/processes/orders/signals/amount/observations"+query, eng, "", ""); a.status != http.StatusBadRequest || a.err.Field != field {
			t.Fatalf("%s: %d %+v", query, a.status, a.err)
		}
	}
	if a := do(t, srv, "GET", "/v1/processes/orders/signals/weather/observations", eng, "", ""); a.status != http.StatusNotFound || a.err.Field != "signal" || !strings.Contains(a.err.Message, `declares no signal "weather"`) {
		t.Fatalf("an undeclared signal: %d %+v", a.status, a.err)
	}
	created := do(t, srv, "POST", "/v1/keys", keys[store.RoleAdmin], "application/json", `{"name":"returns team","role":"engineer","processes":["returns"]}`)
	for _, path := range []string{"/v1/processes/orders/signals", "/v1/processes/orders/signals/amount/observations"} {
		if a := do(t, srv, "GET", path, created.body["key"].(string), "", ""); a.status != http.StatusForbidden {
			t.Fatalf("%s with a key limited to another process: %d %+v", path, a.status, a.err)
		}
	}
}
