package anomaly

import "testing"

func TestRate(t *testing.T) {
	flat := make([]int, 48)
	for i := range flat {
		flat[i] = 10 + i%3
	}
	for _, tc := range []struct {
		name      string
		current   int
		history   []int
		anomalous bool
		warming   bool
	}{
		{"warming up", 100, []int{1, 2, 3}, false, true},
		{"normal hour", 12, flat, false, false},
		{"surge", 60, flat, true, false},
		{"quiet hour is not a surge", 0, flat, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := Rate(tc.current, tc.history)
			if s.Anomalous != tc.anomalous || s.WarmingUp != tc.warming {
				t.Fatalf("Rate(%d) = %+v", tc.current, s)
			}
			if s.Score < 0 || s.Score > 1 {
				t.Fatalf("score %v outside [0,1]", s.Score)
			}
			if tc.anomalous && s.Score <= 0.5 {
				t.Fatalf("anomalous with score %v", s.Score)
			}
		})
	}
}
