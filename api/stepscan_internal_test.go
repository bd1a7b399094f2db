package api

import (
	"encoding/json"
	"reflect"
	"testing"
)

// unmarshalStepState is what scanStepState stands in for.
func unmarshalStepState(data []byte) (stepState, error) {
	var st struct {
		Plan    []reportStep `json:"plan"`
		Reviews []struct {
			Step string `json:"step"`
		} `json:"reviews"`
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return stepState{}, err
	}
	out := stepState{Plan: st.Plan}
	for _, r := range st.Reviews {
		out.Reviews = append(out.Reviews, r.Step)
	}
	return out, nil
}

var stepStateSeeds = []string{
	`{"status":"completed","process":"orders","version":1,"plan":[{"id":"reserve","kind":"task","origin":"main","state":"done","started_at":"2026-11-27T01:00:00.123456789Z","finished_at":"2026-11-27T01:00:01Z","decided":true},{"id":"extra_qa","kind":"review","origin":"added","added_by":"peak-qa","state":"skipped","skipped_by":"small","decided":false,"params":{"a":[1,2.5e3,-0.1,true,false,null,"x\"y"]}}],"results":{"reserve":{"ok":true}},"reviews":[{"id":"rv_1","step":"extra_qa","queue":"qa","moves":[{"from":"a","to":"b"}]}]}`,
	`{"plan":[{"id":"check","kind":"review","state":"waiting_review"}],"reviews":[{"id":"rv_2","step":"check","queue":"seniors","status":"open","escalated":true,"moves":[{"from":"first","to":"seniors","by":"sla","at":"2026-11-27T02:00:00Z"}],"opened_at":"2026-11-27T01:00:00Z","due_at":"2026-11-28T02:00:00Z","priority":5}]}`,
	`{"plan":null,"reviews":null}`,
	`{"plan":[],"reviews":[]}`,
	` { "plan" : [ { "id" : "a\u00e9\n" , "state" : null , "started_at" : null } ] , "x" : { } , "y" : [ ] } `,
	`{"Plan":[{"ID":"upper","STATE":"done"}],"plan":[{"id":"second"}]}`,
	`{"plan":[{"id":"é ü","origin":"mäin","finished_at":"2026-01-02T03:04:05+01:00"}]}`,
	`null`,
	`{"plan":[null,{"id":"b"}],"reviews":[null,{"step":"b"}]}`,
	`{"plan":[{"started_at":"2026-11-27T01:00:00Z","started_at":null}]}`,
	`{"plan":[{"id":5}]}`,
	`{"plan":{}}`,
	`{"plan":[{"started_at":"yesterday"}]}`,
	`{"plan":[]`,
	`{"a":01}`,
	`{"a":"\x"}`,
	`{"a":1e}`,
	`{"a":-}`,
	`[]`,
	`{"a":nul}`,
	`{"plan":[]} x`,
	`{"reviews":[5]}`,
}

// The scanner reads a saved state as json.Unmarshal does: the same plan
// and reviews from any valid state, an error for anything it rejects.
func TestScanStepState(t *testing.T) {
	for _, seed := range stepStateSeeds {
		checkStepScan(t, []byte(seed))
	}
}

func FuzzScanStepState(f *testing.F) {
	for _, seed := range stepStateSeeds {
		f.Add([]byte(seed))
	}
	f.Fuzz(checkStepScan)
}

// checkScanner reads every state checked: the strings one state kept
// must not leak into the next.
var checkScanner stateScanner

func checkStepScan(t *testing.T, data []byte) {
	t.Helper()
	want, wantErr := unmarshalStepState(data)
	got, err := checkScanner.scanStepState(data)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("%q: scan error %v, json.Unmarshal error %v", data, err, wantErr)
	}
	// An empty list reads as none either way.
	if len(got.Plan) == 0 {
		got.Plan, want.Plan = nil, nil
	}
	if len(got.Reviews) == 0 {
		got.Reviews = nil
	}
	if err == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("%q:\nscanned   %+v\nunmarshal %+v", data, got, want)
	}
}

func BenchmarkScanStepState(b *testing.B) {
	doc := []byte(stepStateSeeds[0])
	b.SetBytes(int64(len(doc)))
	b.Run("scan", func(b *testing.B) {
		var ss stateScanner
		for range b.N {
			if _, err := ss.scanStepState(doc); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("unmarshal", func(b *testing.B) {
		for range b.N {
			if _, err := unmarshalStepState(doc); err != nil {
				b.Fatal(err)
			}
		}
	})
}
