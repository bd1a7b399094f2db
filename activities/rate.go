package activities

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/adaptflow/adaptflow/ml/anomaly"
	"github.com/adaptflow/adaptflow/policies"
	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
)

// An arrival-rate signal is the number of starts of a process in the hour
// before each ten-minute boundary, observed in order by the same detector
// (and defaults) as any signal, with the boundaries' times, so that it
// learns the daily and weekly rhythm: the usual Monday-morning peak is not
// an anomaly, a surge far above the usual for that hour of the week is.
// The detector's state is shared by all workers like a value signal's;
// whichever worker decides first after a boundary observes every boundary
// since the last one observed (a new detector learns from up to five weeks
// of starts), and the signal of a decision is that of the latest boundary
// at least rateSettle old: a start is stored with the API's time before its
// row commits, so a boundary is observed only once the starts before it
// have been written.
const (
	rateStep     = 10 * time.Minute
	rateWindow   = time.Hour
	rateBackfill = 5 * 7 * 24 * time.Hour
	rateSettle   = time.Minute
)

// rateState is what is saved per arrival-rate signal.
type rateState struct {
	Detector anomaly.Snapshot `json:"detector"`
	// Last is the latest boundary observed, and Signal the signal there.
	Last   time.Time       `json:"last"`
	Signal policies.Signal `json:"signal"`
}

type cachedRate struct {
	at     time.Time // the boundary
	signal policies.Signal
}

// observeRate is the arrival-rate signal at the latest settled boundary
// before now, observing the boundaries not yet observed.
func (a *Activities) observeRate(ctx context.Context, def *process.Definition, sig process.Signal, now time.Time) (policies.Signal, error) {
	key := def.Name + "/" + sig.Name
	at := now.Add(-rateSettle).Truncate(rateStep)
	a.mu.Lock()
	c, ok := a.rates[key]
	a.mu.Unlock()
	if ok && c.at.Equal(at) {
		return c.signal, nil
	}
	var signal policies.Signal
	var observed []store.Observation
	err := a.updateDetectorState(ctx, key, func(raw json.RawMessage) (any, bool, error) {
		observed = nil
		var st rateState
		if raw != nil {
			if err := json.Unmarshal(raw, &st); err != nil {
				return nil, false, fmt.Errorf("detector %s: %w", key, err)
			}
		}
		if !st.Last.Before(at) { // another worker observed this boundary
			signal = st.Signal
			return nil, false, nil
		}
		d := anomaly.NewDetector(anomaly.DetectorOptions{})
		from := at.Add(-rateBackfill)
		if raw != nil && st.Last.After(from) {
			d, from = anomaly.Restore(st.Detector), st.Last.Add(rateStep)
		}
		// Ten-minute buckets from an hour before the first boundary to
		// observe, to the last; those before the process's first start
		// are left out.
		counts, err := a.Starts.StartCounts(ctx, def.Name, from.Add(-rateWindow), at, rateStep)
		if err != nil {
			return nil, false, err
		}
		per := int(rateWindow / rateStep)
		n := int(at.Sub(from.Add(-rateWindow)) / rateStep)
		buckets := make([]int, n)
		copy(buckets[n-len(counts):], counts)
		first := n - len(counts) // the first bucket that may hold a start
		var obs []store.Observation
		for j := max(per, first+1); j <= n; j++ {
			v := 0
			for _, b := range buckets[j-per : j] {
				v += b
			}
			boundary := from.Add(time.Duration(j-per) * rateStep)
			signal = rateSignal(v, d.ObserveAt(boundary, float64(v)))
			obs = append(obs, observation(def.Name, sig.Name, "", boundary, signal))
		}
		if len(obs) == 0 { // no start yet: nothing to learn from
			signal = policies.Signal{WarmingUp: true, Reason: "warming up: no completed ten-minute period with starts yet"}
			return nil, false, nil
		}
		// The boundaries' history is kept before the state moves past
		// them: an observer that stops in between leaves them to the
		// next, and a boundary is kept once.
		if err := a.Detectors.AppendObservations(ctx, obs...); err != nil {
			return nil, false, err
		}
		observed = obs
		return rateState{Detector: d.Snapshot(), Last: at, Signal: signal}, true, nil
	})
	if err != nil {
		return policies.Signal{}, err
	}
	a.Metrics.observed(observed)
	if len(observed) > 0 { // the latest boundary: those before it are history
		a.logFlagged(ctx, observed[len(observed)-1])
	}
	a.cacheRate(key, at, signal)
	return signal, nil
}

func (a *Activities) cacheRate(key string, at time.Time, s policies.Signal) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.rates == nil {
		a.rates = map[string]cachedRate{}
	}
	a.rates[key] = cachedRate{at: at, signal: s}
}

func rateSignal(v int, o anomaly.Observation) policies.Signal {
	s := signalFrom(float64(v), o)
	s.Baseline.Low = max(0, o.Low)
	starts := fmt.Sprintf("%d starts", v)
	if v == 1 {
		starts = "1 start"
	}
	switch {
	case o.WarmingUp:
		s.Reason = fmt.Sprintf("warming up: %s in the last hour; it judges after %.1f more hours of history", starts, float64(o.WarmupLeft)*rateStep.Hours())
	case o.Continuing:
		s.Reason = fmt.Sprintf("%s in the last hour continues an unusual stretch: expected about %.0f for the time (normal %.1f to %.1f)", starts, o.Expected, s.Baseline.Low, o.High)
	case o.Anomalous && o.Shift != 0:
		s.Reason = fmt.Sprintf("%s in the last hour continues a sustained shift: the rate has kept running %s what is usual for the time", starts, sideOf(o.Shift))
	case o.Anomalous:
		s.Reason = fmt.Sprintf("%s in the last hour is unusual: expected about %.0f for the time (normal %.1f to %.1f)", starts, o.Expected, s.Baseline.Low, o.High)
	case o.Recurring:
		s.Reason = fmt.Sprintf("%s in the last hour is far from the expected %.0f, but rates this far off have recurred lately: not flagged", starts, o.Expected)
	case o.Score >= anomaly.DefaultThreshold:
		s.Reason = fmt.Sprintf("%s in the last hour is off the expected %.0f for the time, but a larger miss came lately and this one reads as its aftermath: not flagged", starts, o.Expected)
	default:
		s.Reason = fmt.Sprintf("%s in the last hour is within what is usual for the time (about %.0f)", starts, o.Expected)
	}
	return s
}
