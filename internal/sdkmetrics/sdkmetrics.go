// Package sdkmetrics exports the Temporal SDK's own metrics (requests to
// the frontend, task latencies, schedule-to-start latencies, free worker
// slots, sticky cache) to a Prometheus registry: what tells whether the
// workers keep up and when to add more.
//
// The SDK names a metric and tags each use; Prometheus needs a fixed set of
// labels per name. The first use of a name fixes its labels; a later use
// with other tags fills a missing label with "" and leaves an extra tag out.
// Counters get the suffix _total, timers become histograms in seconds with
// the suffix _seconds.
package sdkmetrics

import (
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"
)

// Buckets are the timers' histogram buckets, in seconds: 1 ms to about 2.5
// minutes.
var Buckets = prometheus.ExponentialBuckets(0.001, 2.5, 14)

// New is a handler that registers the SDK's metrics with reg as they are
// first used.
func New(reg prometheus.Registerer) client.MetricsHandler {
	return &handler{vecs: &vecs{reg: reg, byName: map[string]*vec{}}}
}

type handler struct {
	vecs *vecs
	tags map[string]string
}

// vecs are the metric vectors made so far, by Prometheus name.
type vecs struct {
	reg    prometheus.Registerer
	mu     sync.Mutex
	byName map[string]*vec
}

type vec struct {
	labels    []string
	counter   *prometheus.CounterVec
	gauge     *prometheus.GaugeVec
	histogram *prometheus.HistogramVec
}

func (h *handler) WithTags(tags map[string]string) client.MetricsHandler {
	merged := maps.Clone(h.tags)
	if merged == nil {
		merged = map[string]string{}
	}
	for k, v := range tags {
		merged[sanitize(k)] = v
	}
	return &handler{vecs: h.vecs, tags: merged}
}

func (h *handler) Counter(name string) client.MetricsCounter {
	name = sanitize(name)
	if !strings.HasSuffix(name, "_total") {
		name += "_total"
	}
	v, values := h.vecs.get(name, "counter", h.tags, func(labels []string) *vec {
		return &vec{counter: prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: "Temporal SDK counter " + name + "."}, labels)}
	})
	if v == nil {
		return client.MetricsNopHandler.Counter(name)
	}
	c := v.counter.WithLabelValues(values...)
	return counterFunc(func(n int64) { c.Add(float64(n)) })
}

func (h *handler) Gauge(name string) client.MetricsGauge {
	name = sanitize(name)
	v, values := h.vecs.get(name, "gauge", h.tags, func(labels []string) *vec {
		return &vec{gauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: "Temporal SDK gauge " + name + "."}, labels)}
	})
	if v == nil {
		return client.MetricsNopHandler.Gauge(name)
	}
	g := v.gauge.WithLabelValues(values...)
	return gaugeFunc(g.Set)
}

func (h *handler) Timer(name string) client.MetricsTimer {
	name = sanitize(name)
	if !strings.HasSuffix(name, "_seconds") {
		name += "_seconds"
	}
	v, values := h.vecs.get(name, "histogram", h.tags, func(labels []string) *vec {
		return &vec{histogram: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: "Temporal SDK timer " + name + ", in seconds.", Buckets: Buckets}, labels)}
	})
	if v == nil {
		return client.MetricsNopHandler.Timer(name)
	}
	o := v.histogram.WithLabelValues(values...)
	return timerFunc(func(d time.Duration) { o.Observe(d.Seconds()) })
}

// get is the vector of name, made (by mk, with tags' keys as its labels)
// and registered at its first use, and the label values of tags for it;
// nil when it is of another kind than kind or could not be registered.
func (vs *vecs) get(name, kind string, tags map[string]string, mk func(labels []string) *vec) (*vec, []string) {
	vs.mu.Lock()
	v, ok := vs.byName[name]
	if !ok {
		labels := slices.Sorted(maps.Keys(tags))
		v = mk(labels)
		v.labels = labels
		var c prometheus.Collector
		switch {
		case v.counter != nil:
			c = v.counter
		case v.gauge != nil:
			c = v.gauge
		default:
			c = v.histogram
		}
		if err := vs.reg.Register(c); err != nil {
			v = nil
		}
		vs.byName[name] = v
	}
	vs.mu.Unlock()
	if v == nil || v.kind() != kind {
		return nil, nil
	}
	values := make([]string, len(v.labels))
	for i, l := range v.labels {
		values[i] = tags[l]
	}
	return v, values
}

func (v *vec) kind() string {
	switch {
	case v.counter != nil:
		return "counter"
	case v.gauge != nil:
		return "gauge"
	default:
		return "histogram"
	}
}

var invalid = regexp.MustCompile(`[^a-zA-Z0-9_]`)

// sanitize makes a name or label valid for Prometheus.
func sanitize(s string) string {
	s = invalid.ReplaceAllString(s, "_")
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		s = "_" + s
	}
	return s
}

type counterFunc func(int64)

func (f counterFunc) Inc(n int64) { f(n) }

type gaugeFunc func(float64)

func (f gaugeFunc) Update(x float64) { f(x) }

type timerFunc func(time.Duration)

func (f timerFunc) Record(d time.Duration) { f(d) }
