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
		{anomaly.Observation{Score: 0.7, Expected: 100, Low: 90, High: 110}, "40 is off the expected 100 (normal 90 to 110), but a larger miss came lately and this one reads as its aftermath: not flagged"},
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

// An arrival rate's reason speaks of starts in the last hour against what
// is usual for the time.
func TestRateSignalReasons(t *testing.T) {
	for _, tc := range []struct {
		v    int
		o    anomaly.Observation
		want string
	}{
		{40, anomaly.Observation{Anomalous: true, Expected: 5, Low: -2, High: 12}, "40 starts in the last hour is unusual: expected about 5 for the time (normal 0.0 to 12.0)"},
		{35, anomaly.Observation{Continuing: true, Expected: 5, Low: 1, High: 12}, "35 starts in the last hour continues an unusual stretch"},
		{1, anomaly.Observation{Anomalous: true, Shift: -1, Expected: 30}, "1 start in the last hour continues a sustained shift: the rate has kept running below what is usual for the time"},
		{60, anomaly.Observation{Recurring: true, Expected: 20}, "rates this far off have recurred lately: not flagged"},
		{28, anomaly.Observation{Expected: 30}, "28 starts in the last hour is within what is usual for the time (about 30)"},
		{3, anomaly.Observation{Score: 0.6, Expected: 30}, "3 starts in the last hour is off the expected 30 for the time, but a larger miss came lately and this one reads as its aftermath: not flagged"},
		{2, anomaly.Observation{WarmingUp: true, WarmupLeft: 60}, "warming up: 2 starts in the last hour; it judges after 10.0 more hours of history"},
	} {
		s := rateSignal(tc.v, tc.o)
		if !strings.Contains(s.Reason, tc.want) || s.Anomalous != (tc.o.Anomalous || tc.o.Continuing) || s.Value != float64(tc.v) || s.Baseline.Low < 0 {
			t.Errorf("%d, %+v: %+v, want reason %q", tc.v, tc.o, s, tc.want)
		}
	}
}
