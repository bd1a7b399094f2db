// Package anomaly turns observations into signals that policies read.
//
// This file holds the arrival-rate signal: how many instances of a process
// started in the last hour, against the hours before it. It is a robust
// baseline (median and median absolute deviation of the previous hours), so
// a few busy hours in the history do not hide a surge.
package anomaly

import (
	"fmt"
	"math"
	"slices"
)

// MinHistoryHours is how many hours of history a rate signal needs before it
// stops warming up.
const MinHistoryHours = 24

// Threshold is the robust z-score above which a rate is anomalous.
const Threshold = 4.0

// RateSignal is a computed arrival-rate signal.
type RateSignal struct {
	Value     float64
	Score     float64 // in [0, 1]
	Anomalous bool
	WarmingUp bool
	Expected  float64
	Low       float64
	High      float64
	Reason    string
}

// Rate scores current (starts in the last hour) against history (starts per
// hour in the hours before, oldest first; hours before the first start of
// the process are left out by the caller).
func Rate(current int, history []int) RateSignal {
	s := RateSignal{Value: float64(current)}
	if len(history) < MinHistoryHours {
		s.WarmingUp = true
		s.Reason = fmt.Sprintf("warming up: %d of %d hours of history", len(history), MinHistoryHours)
		return s
	}
	xs := make([]float64, len(history))
	for i, h := range history {
		xs[i] = float64(h)
	}
	med := median(xs)
	dev := make([]float64, len(xs))
	for i, x := range xs {
		dev[i] = math.Abs(x - med)
	}
	// 1.4826 scales the MAD to a standard deviation for normal data; the
	// floor of 1 start per hour keeps a flat history from making every
	// extra start an anomaly.
	sigma := math.Max(1.4826*median(dev), 1)
	z := (s.Value - med) / sigma
	s.Expected = med
	s.Low = math.Max(0, med-Threshold*sigma)
	s.High = med + Threshold*sigma
	s.Score = 1 / (1 + math.Exp(-(z - Threshold))) // 0.5 at the threshold
	if z <= 0 {
		s.Score = 0
	}
	s.Anomalous = z > Threshold
	switch {
	case s.Anomalous:
		s.Reason = fmt.Sprintf("%d starts in the last hour, expected about %.0f (normal up to %.1f)", current, med, s.High)
	default:
		s.Reason = fmt.Sprintf("%d starts in the last hour is within the normal range %.1f–%.1f", current, s.Low, s.High)
	}
	return s
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
