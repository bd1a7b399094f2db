package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/adaptflow/adaptflow/ml/anomaly"
	"github.com/adaptflow/adaptflow/policies"
	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
)

// DetectorStore keeps the shared state of the anomaly detectors and their
// observations.
type DetectorStore interface {
	DetectorState(ctx context.Context, key string) (store.DetectorState, error)
	SaveDetectorState(ctx context.Context, st store.DetectorState) (int64, error)
	AppendObservation(ctx context.Context, o store.Observation) error
}

// detectorState is what is saved per (process, signal): the detector and
// the verdicts on the last instances it saw, so a retried decision gets the
// same verdict and the detector sees each instance once.
type detectorState struct {
	Detector anomaly.Snapshot           `json:"detector"`
	Seen     []string                   `json:"seen"`
	Verdicts map[string]policies.Signal `json:"verdicts"`
}

const rememberInstances = 64

// observeValue feeds one instance's value to the process's shared detector
// for the signal, saving its state with compare-and-swap so that workers
// observing at once lose no update.
func (a *Activities) observeValue(ctx context.Context, def *process.Definition, sig process.Signal, instanceID string, value float64, now time.Time) (policies.Signal, error) {
	key := def.Name + "/" + sig.Name
	for range 50 {
		cur, err := a.Detectors.DetectorState(ctx, key)
		if err != nil {
			return policies.Signal{}, err
		}
		st := detectorState{Verdicts: map[string]policies.Signal{}}
		if cur.State != nil {
			if err := json.Unmarshal(cur.State, &st); err != nil {
				return policies.Signal{}, fmt.Errorf("detector %s: %w", key, err)
			}
		}
		if v, ok := st.Verdicts[instanceID]; ok {
			return v, nil
		}
		var d *anomaly.Detector
		if cur.State == nil {
			d = anomaly.NewDetector(anomaly.DetectorOptions{})
		} else {
			d = anomaly.Restore(st.Detector)
		}
		o := d.Observe(value)
		verdict := signalOf(value, o)
		st.Detector = d.Snapshot()
		st.Seen = append(st.Seen, instanceID)
		if st.Verdicts == nil {
			st.Verdicts = map[string]policies.Signal{}
		}
		st.Verdicts[instanceID] = verdict
		for len(st.Seen) > rememberInstances {
			delete(st.Verdicts, st.Seen[0])
			st.Seen = st.Seen[1:]
		}
		cur.State = process.JSON(st)
		if _, err := a.Detectors.SaveDetectorState(ctx, cur); errors.Is(err, store.ErrConflict) {
			continue // another worker saved first: read again
		} else if err != nil {
			return policies.Signal{}, err
		}
		if err := a.Detectors.AppendObservation(ctx, store.Observation{Process: def.Name, Signal: sig.Name, At: now, Value: value}); err != nil {
			a.logger().WarnContext(ctx, "observation not kept", "signal", key, "err", err)
		}
		return verdict, nil
	}
	return policies.Signal{}, fmt.Errorf("detector %s: too many concurrent updates", key)
}

func signalOf(v float64, o anomaly.Observation) policies.Signal {
	s := policies.Signal{Value: v, Score: o.Score, Anomalous: o.Anomalous || o.Continuing, WarmingUp: o.WarmingUp, Recurring: o.Recurring,
		Baseline: policies.Baseline{Expected: o.Expected, Low: o.Low, High: o.High}}
	switch {
	case o.WarmingUp:
		s.Reason = fmt.Sprintf("warming up: it judges after %d more observations", o.WarmupLeft)
	case o.Continuing:
		s.Reason = fmt.Sprintf("%g is unusual, as were the values just before it: expected about %.4g (normal %.4g to %.4g)", v, o.Expected, o.Low, o.High)
	case o.Anomalous && o.Shift != 0:
		side := "above"
		if o.Shift < 0 {
			side = "below"
		}
		s.Reason = fmt.Sprintf("%g continues a sustained shift: recent values have kept running %s what is usual", v, side)
	case o.Anomalous:
		s.Reason = fmt.Sprintf("%g is unusual: expected about %.4g (normal %.4g to %.4g)", v, o.Expected, o.Low, o.High)
	case o.Recurring:
		s.Reason = fmt.Sprintf("%g is far from the expected %.4g (normal %.4g to %.4g), but misses this large have recurred lately: not flagged", v, o.Expected, o.Low, o.High)
	default:
		s.Reason = fmt.Sprintf("%g is within what is usual (about %.4g)", v, o.Expected)
	}
	return s
}
