package activities

import (
	"bytes"
	"encoding/json"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/adaptflow/adaptflow/ml/classify"
	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
)

// Metrics counts what the worker does, for Prometheus: decisions by
// action, guardrail rejections, classifications by who answered, calls
// to the LLM with their failures, latency and tokens, and trainings of the
// embedded classifiers. A nil *Metrics
// counts nothing.
type Metrics struct {
	decisions       *prometheus.CounterVec
	rejections      *prometheus.CounterVec
	classifications *prometheus.CounterVec
	llmCalls        *prometheus.CounterVec
	llmLatency      prometheus.Histogram
	llmTokens       *prometheus.CounterVec
	trainings       *prometheus.HistogramVec
	signals         *prometheus.CounterVec
	webhooks        *prometheus.CounterVec
	// Finish counts the instances that end.
	Finish *FinishMetrics
}

// NewMetrics makes the worker's metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "adaptflow_decisions_total",
			Help: "Decisions made before a step, by process and applied action (skip, add, review, set; none when no policy changed the plan).",
		}, []string{"process", "action"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "adaptflow_decision_rejections_total",
			Help: "Actions proposed by a policy and refused by a guardrail or a conflict, by process.",
		}, []string{"process"}),
		classifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "adaptflow_classifications_total",
			Help: "Classifications of unstructured input, by who answered (llm, embedded) and whether the instance goes to review.",
		}, []string{"model", "review"}),
		llmCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "adaptflow_llm_requests_total",
			Help: "Classifications asked of the LLM, by outcome: ok, cached, retried (429, 5xx, timeout: the activity tries again) or failed (the embedded classifier answered instead).",
		}, []string{"outcome"}),
		llmLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "adaptflow_llm_request_duration_seconds", Help: "Latency of the LLM's answers (cache misses).",
			Buckets: []float64{.05, .1, .25, .5, 1, 2, 4, 8, 16, 32},
		}),
		llmTokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "adaptflow_llm_tokens_total", Help: "Tokens the LLM counted, by kind (prompt, completion).",
		}, []string{"kind"}),
		trainings: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "adaptflow_classifier_training_seconds",
			Help:    "Trainings of embedded classifiers, by kind: full (a classification waited for it), update (new examples learned at once) background (every example, while an updated model answers) or stopped (a background training the worker's shutdown ended).",
			Buckets: []float64{.01, .05, .25, 1, 4, 16, 64},
		}, []string{"kind"}),
		signals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "adaptflow_signal_observations_total",
			Help: "Observations of signals by their detectors, by process, signal and verdict (usual, anomalous, recurring, warming_up): alert on the anomalous ones. Each is counted once, by the worker that made it.",
		}, []string{"process", "signal", "verdict"}),
	}
	m.webhooks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "adaptflow_webhook_deliveries_total",
		Help: "Attempts to deliver a webhook (instance callbacks, review escalations), by process, event and outcome: delivered (a 2xx answer), retrying (it failed, and is tried again) or undelivered (given up: a 4xx answer, or the last attempt failed).",
	}, []string{"process", "event", "outcome"})
	reg.MustRegister(m.decisions, m.rejections, m.classifications, m.llmCalls, m.llmLatency, m.llmTokens, m.trainings, m.signals, m.webhooks)
	m.Finish = NewFinishMetrics(reg)
	return m
}

// FinishMetrics count the instances that end, with their cycle time, each
// once: when the store first saves its final status. The worker counts
// the ends its workflows save; the API those it records itself (an
// instance terminated in Temporal). A nil *FinishMetrics counts nothing.
type FinishMetrics struct {
	finished      *prometheus.CounterVec
	cycleTime     *prometheus.HistogramVec
	sla           *prometheus.CounterVec
	compensations *prometheus.CounterVec
}

// NewFinishMetrics makes the metrics of ended instances and registers them
// with reg.
func NewFinishMetrics(reg prometheus.Registerer) *FinishMetrics {
	f := &FinishMetrics{
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "adaptflow_instances_finished_total",
			Help: "Instances that ended, by process and final status (completed, failed, rejected, canceled). A retried instance ends once per run: take adaptflow_instance_retries_total off both failed and all for the error rate.",
		}, []string{"process", "status"}),
		cycleTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "adaptflow_instance_cycle_seconds",
			Help:    "Time from an instance's start to its end, by process and final status.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 12), // 1 s to 48 days
		}, []string{"process", "status"}),
		sla: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "adaptflow_instance_sla_total",
			Help: "Instances of a definition with an SLA that ended (completed, rejected or failed), by process and outcome: met (within the SLA) or missed.",
		}, []string{"process", "outcome"}),
	}
	f.compensations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "adaptflow_compensations_total",
		Help: "Compensations run by instances that ended without completing, by process, the step they undid and outcome (done, failed).",
	}, []string{"process", "step", "outcome"})
	reg.MustRegister(f.finished, f.cycleTime, f.sla, f.compensations)
	return f
}

// compensated counts the compensations an ended instance ran, from its
// final state (read only then).
func (m *Metrics) compensated(process string, state []byte) {
	if m == nil || m.Finish == nil || !bytes.Contains(state, []byte(`"compensation"`)) {
		return
	}
	var st struct {
		Plan []struct {
			State       string `json:"state"`
			Origin      string `json:"origin"`
			Compensates string `json:"compensates"`
		} `json:"plan"`
	}
	if json.Unmarshal(state, &st) != nil {
		return
	}
	for _, p := range st.Plan {
		if p.Origin != "compensation" {
			continue
		}
		outcome := "done"
		if p.State != "done" {
			outcome = "failed"
		}
		m.Finish.compensations.WithLabelValues(process, p.Compensates, outcome).Inc()
	}
}

// againstSLA counts whether an instance that ended met its SLA (none: not
// counted; nor is a canceled instance).
func (f *FinishMetrics) againstSLA(fin *store.Finish, sla time.Duration) {
	if f == nil || fin == nil || sla <= 0 || fin.Status == store.InstanceCanceled {
		return
	}
	outcome := store.SLAMet
	if fin.CycleTime > sla {
		outcome = store.SLAMissed
	}
	f.sla.WithLabelValues(fin.Process, outcome).Inc()
}

// Ended counts an instance's end, as the store reported it (nil: the save
// was not the first of its final status).
func (f *FinishMetrics) Ended(fin *store.Finish) {
	if f == nil || fin == nil {
		return
	}
	f.finished.WithLabelValues(fin.Process, fin.Status).Inc()
	f.cycleTime.WithLabelValues(fin.Process, fin.Status).Observe(fin.CycleTime.Seconds())
}

// webhook counts an attempt to deliver a webhook, by its outcome.
func (m *Metrics) webhook(process, event, outcome string) {
	if m == nil {
		return
	}
	m.webhooks.WithLabelValues(process, event, outcome).Inc()
}

func (m *Metrics) decided(processName string, applied []process.AppliedAction, rejected int) {
	if m == nil {
		return
	}
	if len(applied) == 0 {
		m.decisions.WithLabelValues(processName, "none").Inc()
	}
	for _, a := range applied {
		m.decisions.WithLabelValues(processName, string(a.Action.Kind())).Inc()
	}
	if rejected > 0 {
		m.rejections.WithLabelValues(processName).Add(float64(rejected))
	}
}

// ended counts an instance that ended, once: the store reports the finish
// only for the first save of its final status.
func (m *Metrics) ended(f *store.Finish, sla time.Duration) {
	if m != nil {
		m.Finish.Ended(f)
		m.Finish.againstSLA(f, sla)
	}
}

// observed counts observations of a signal.
func (m *Metrics) observed(obs []store.Observation) {
	if m == nil {
		return
	}
	for _, o := range obs {
		verdict := "usual"
		switch v := o.Verdict; {
		case v == nil:
			continue
		case v.WarmingUp:
			verdict = "warming_up"
		case v.Anomalous:
			verdict = "anomalous"
		case v.Recurring:
			verdict = "recurring"
		}
		m.signals.WithLabelValues(o.Process, o.Signal, verdict).Inc()
	}
}

func (m *Metrics) classified(model string, review bool) {
	if m == nil {
		return
	}
	r := "no"
	if review {
		r = "yes"
	}
	m.classifications.WithLabelValues(model, r).Inc()
}

func (m *Metrics) trained(kind string, took time.Duration) {
	if m == nil {
		return
	}
	m.trainings.WithLabelValues(kind).Observe(took.Seconds())
}

// llm counts one call to the LLM: its answer, or the error and whether the
// activity will try again.
func (m *Metrics) llm(res classify.LLMResult, err error, retried bool) {
	if m == nil {
		return
	}
	switch {
	case err != nil && retried && errors.Is(err, classify.ErrRetryable):
		m.llmCalls.WithLabelValues("retried").Inc()
	case err != nil:
		m.llmCalls.WithLabelValues("failed").Inc()
	case res.Cached:
		m.llmCalls.WithLabelValues("cached").Inc()
	default:
		m.llmCalls.WithLabelValues("ok").Inc()
		m.llmLatency.Observe(res.LatencyMS / 1000)
		m.llmTokens.WithLabelValues("prompt").Add(float64(res.PromptTokens))
		m.llmTokens.WithLabelValues("completion").Add(float64(res.CompletionTokens))
	}
}
