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
	AppendObservations(ctx context.Context, obs ...store.Observation) error
	InstanceObservation(ctx context.Context, process, signal, instanceID string) (store.Observation, error)
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

// updateDetectorState reads the shared state saved under key, lets update
// work on it, and saves what update returns (when save is set) with
// compare-and-swap, so that workers updating at once lose no update: on a
// conflict update runs again on the state saved first.
func (a *Activities) updateDetectorState(ctx context.Context, key string, update func(state json.RawMessage) (next any, save bool, err error)) error {
	for range 50 {
		cur, err := a.Detectors.DetectorState(ctx, key)
		if err != nil {
			return err
		}
		next, save, err := update(cur.State)
		if err != nil || !save {
			return err
		}
		cur.State = process.JSON(next)
		if _, err := a.Detectors.SaveDetectorState(ctx, cur); !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
	return fmt.Errorf("detector %s: too many concurrent updates", key)
}

// observeValue feeds one instance's value to the process's shared detector
// for the signal, once per instance.
func (a *Activities) observeValue(ctx context.Context, def *process.Definition, sig process.Signal, instanceID string, value float64, now time.Time) (policies.Signal, error) {
	key := def.Name + "/" + sig.Name
	var verdict policies.Signal
	observed := false
	err := a.updateDetectorState(ctx, key, func(raw json.RawMessage) (any, bool, error) {
		st := detectorState{Verdicts: map[string]policies.Signal{}}
		if raw != nil {
			if err := json.Unmarshal(raw, &st); err != nil {
				return nil, false, fmt.Errorf("detector %s: %w", key, err)
			}
		}
		if v, ok := st.Verdicts[instanceID]; ok {
			verdict, observed = v, false
			return nil, false, nil
		}
		// Older than the verdicts kept in the state (a decision retried
		// after many other instances were observed): the one kept in the
		// history stands.
		if o, err := a.Detectors.InstanceObservation(ctx, def.Name, sig.Name, instanceID); err == nil && o.Verdict != nil {
			verdict, observed = signalOfObservation(o), false
			return nil, false, nil
		} else if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, false, err
		}
		d := anomaly.NewDetector(anomaly.DetectorOptions{})
		if raw != nil {
			d = anomaly.Restore(st.Detector)
		}
		verdict, observed = signalOf(value, d.Observe(value)), true
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
		return st, true, nil
	})
	if err != nil {
		return policies.Signal{}, err
	}
	// Kept once per instance: a retried decision that finds its verdict
	// appends it again, in case the attempt that observed it stopped here.
	o := observation(def.Name, sig.Name, instanceID, now, verdict)
	if err := a.Detectors.AppendObservations(ctx, o); err != nil {
		return policies.Signal{}, err
	}
	if observed {
		a.Metrics.observed([]store.Observation{o})
		a.logFlagged(ctx, o)
	}
	return verdict, nil
}

// logFlagged says in the log that a signal flagged an observation, for
// log-based alerting (the metric adaptflow_signal_observations_total
// counts them too).
func (a *Activities) logFlagged(ctx context.Context, o store.Observation) {
	if o.Verdict == nil || !o.Verdict.Anomalous {
		return
	}
	a.logger().InfoContext(ctx, "signal flagged an anomaly", "process", o.Process, "signal", o.Signal, "value", o.Value, "at", o.At,
		"instance", o.InstanceID, "score", o.Verdict.Score, "reason", o.Verdict.Reason)
}

// signalOfObservation is the signal an observation kept in the history
// records.
func signalOfObservation(o store.Observation) policies.Signal {
	v := o.Verdict
	return policies.Signal{Value: o.Value, Score: v.Score, Anomalous: v.Anomalous, WarmingUp: v.WarmingUp, Recurring: v.Recurring,
		Baseline: policies.Baseline{Expected: v.Expected, Low: v.Low, High: v.High}, Reason: v.Reason}
}

// observation is the record of a signal's verdict on a value.
func observation(process, signal, instanceID string, at time.Time, s policies.Signal) store.Observation {
	return store.Observation{Process: process, Signal: signal, At: at, Value: s.Value, InstanceID: instanceID, Verdict: &store.SignalVerdict{
		Score: s.Score, Anomalous: s.Anomalous, WarmingUp: s.WarmingUp, Recurring: s.Recurring,
		Expected: s.Baseline.Expected, Low: s.Baseline.Low, High: s.Baseline.High, Reason: s.Reason}}
}

// signalFrom is the signal of an observation of v, without its reason:
// the rest of a flagged event reads as anomalous too.
func signalFrom(v float64, o anomaly.Observation) policies.Signal {
	return policies.Signal{Value: v, Score: o.Score, Anomalous: o.Anomalous || o.Continuing, WarmingUp: o.WarmingUp, Recurring: o.Recurring,
		Baseline: policies.Baseline{Expected: o.Expected, Low: o.Low, High: o.High}}
}

// sideOf names the side of a sustained shift.
func sideOf(shift int) string {
	if shift < 0 {
		return "below"
	}
	return "above"
}

func signalOf(v float64, o anomaly.Observation) policies.Signal {
	s := signalFrom(v, o)
	switch {
	case o.WarmingUp:
		s.Reason = fmt.Sprintf("warming up: it judges after %d more observations", o.WarmupLeft)
	case o.Continuing:
		s.Reason = fmt.Sprintf("%g is unusual, as were the values just before it: expected about %.4g (normal %.4g to %.4g)", v, o.Expected, o.Low, o.High)
	case o.Anomalous && o.Shift != 0:
		s.Reason = fmt.Sprintf("%g continues a sustained shift: recent values have kept running %s what is usual", v, sideOf(o.Shift))
	case o.Anomalous:
		s.Reason = fmt.Sprintf("%g is unusual: expected about %.4g (normal %.4g to %.4g)", v, o.Expected, o.Low, o.High)
	case o.Recurring:
		s.Reason = fmt.Sprintf("%g is far from the expected %.4g (normal %.4g to %.4g), but misses this large have recurred lately: not flagged", v, o.Expected, o.Low, o.High)
	case o.Score >= anomaly.DefaultThreshold:
		s.Reason = fmt.Sprintf("%g is off the expected %.4g (normal %.4g to %.4g), but a larger miss came lately and this one reads as its aftermath: not flagged", v, o.Expected, o.Low, o.High)
	default:
		s.Reason = fmt.Sprintf("%g is within what is usual (about %.4g)", v, o.Expected)
	}
	return s
}
