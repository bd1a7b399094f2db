package activities

import (
	"strings"
	"testing"

	"github.com/adaptflow/adaptflow/ml/anomaly"
)

// A signal's reason says whether the point itself is unusual or continues
// a sustained shift, and which way, or why a far-off point is not flagged.
func TestSignalReasons(t *testing.T) {
	for _, tc := range []struct {
		o    anomaly.Observation
		want string
	}{
		{anomaly.Observation{Anomalous: true, Expected: 10, Low: 8, High: 12}, "40 is unusual: expected about 10 (normal 8 to 12)"},
		{anomaly.Observation{Anomalous: true, Shift: -1, Expected: 10}, "40 continues a sustained shift: recent values have kept running below what is usual"},
		{anomaly.Observation{Anomalous: true, Shift: 1, Expected: 10}, "running above"},
		{anomaly.Observation{Recurring: true, Score: 0.7, Expected: 10, Low: 8, High: 12}, "40 is far from the expected 10 (normal 8 to 12), but misses this large have recurred lately: not flagged"},
		{anomaly.Observation{Continuing: true, Score: 0.8, Expected: 10, Low: 8, High: 12}, "40 is unusual, as were the values just before it: expected about 10 (normal 8 to 12)"},
		{anomaly.Observation{Expected: 10}, "40 is within what is usual (about 10)"},
		{anomaly.Observation{WarmingUp: true, WarmupLeft: 12}, "warming up: it judges after 12 more observations"},
	} {
		s := signalOf(40, tc.o)
		if !strings.Contains(s.Reason, tc.want) {
			t.Errorf("%+v: reason %q, want %q", tc.o, s.Reason, tc.want)
		}
		if s.Recurring != tc.o.Recurring || s.Anomalous != (tc.o.Anomalous || tc.o.Continuing) {
			t.Errorf("%+v: signal %+v", tc.o, s)
		}
	}
}
