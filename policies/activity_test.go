package policies

import (
	"context"
	"fmt"
	"testing"
)

func TestActivityReport(t *testing.T) {
	records := []string{
		// v2 active matched at pack, its skip applied; v3 in shadow matched too.
		`{"time":"2026-11-20T10:00:00Z","step":"pack","evaluations":[{"policy_id":"a","policy_version":2,"mode":"active","matched":true},{"policy_id":"a","policy_version":3,"mode":"shadow","matched":true},{"policy_id":"b","policy_version":1,"mode":"active","matched":false}],"applied":[{"action":{"skip":"pack"},"policy_id":"a"}]}`,
		// b matched, its skip of a mandatory step refused; a failed on a missing fact.
		`{"time":"2026-11-21T10:00:00Z","step":"charge","evaluations":[{"policy_id":"a","policy_version":2,"mode":"active","error":"no such key: vip"},{"policy_id":"b","policy_version":1,"mode":"active","matched":true}],"rejected":[{"action":{"skip":"charge"},"policy_id":"b","reason":"mandatory"}]}`,
		// A review's outcome is no decision.
		`{"time":"2026-11-21T11:00:00Z","review":{"review_id":"rv","status":"decided"}}`,
	}
	scan := func(_ context.Context, fn func([]byte) error) error {
		for _, r := range records {
			if err := fn([]byte(r)); err != nil {
				return err
			}
		}
		return nil
	}
	rep, err := BuildActivityReport(context.Background(), "shop", scan)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range rep.Policies {
		last := "-"
		if p.LastMatchedAt != nil {
			last = p.LastMatchedAt.Format("01-02")
		}
		got = append(got, fmt.Sprintf("%s@%d/%s eval=%d match=%d rate=%.2f at=%v applied=%v rejected=%d errors=%d %q last=%s",
			p.ID, p.Version, p.Mode, p.Evaluated, p.Matched, p.MatchRate, p.MatchedAt, p.Applied, p.Rejected, p.Errors, p.LastError, last))
	}
	want := []string{
		`a@2/active eval=2 match=1 rate=0.50 at=map[pack:1] applied=map[skip:1] rejected=0 errors=1 "no such key: vip" last=11-20`,
		`a@3/shadow eval=1 match=1 rate=1.00 at=map[pack:1] applied=map[] rejected=0 errors=0 "" last=11-20`,
		`b@1/active eval=2 match=1 rate=0.50 at=map[charge:1] applied=map[] rejected=1 errors=0 "" last=11-21`,
	}
	if rep.Decisions != 2 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%d decisions\n%s\nwant\n%s", rep.Decisions, got, want)
	}
}
