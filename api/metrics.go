package api

import (
	"context"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the API's Prometheus metrics: its requests, and the review
// queues read from the store at each scrape (the store is shared by every
// replica, so each reports the same figures and none double counts).
type metrics struct {
	registry *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	starts   *prometheus.CounterVec
	// backgroundStarts counts the starts that finished after their request.
	backgroundStarts *prometheus.CounterVec
}

// RetryCounter registers adaptflow_instance_retries_total with reg and
// returns what counts one retry of a process's failed instance: the
// Options.Retried of the API and of the starters that run queued retries.
func RetryCounter(reg prometheus.Registerer) func(process string) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "adaptflow_instance_retries_total",
		Help: "Failed instances run again from what failed (POST /v1/instances/{id}/retry), by process: counted as the retry runs, so a retry queued under a concurrency limit counts when it leaves the queue, and not if it is withdrawn.",
	}, []string{"process"})
	reg.MustRegister(c)
	return func(process string) { c.WithLabelValues(process).Inc() }
}

func newMetrics(reg *prometheus.Registry, stats ReviewStats, timeout time.Duration) *metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &metrics{
		registry: reg,
		starts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "adaptflow_instance_starts_total",
			Help: "Instance start requests that succeeded, by process and whether they started a new instance (created) or found the business key's instance (existing).",
		}, []string{"process", "result"}),
		backgroundStarts: newBackgroundStarts(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "adaptflow_http_requests_total", Help: "HTTP requests by route, method and status.",
		}, []string{"route", "method", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "adaptflow_http_request_duration_seconds", Help: "HTTP request latency by route and method.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "method"}),
	}
	m.registry.MustRegister(m.requests, m.latency, m.starts, m.backgroundStarts, &reviewCollector{stats: stats, timeout: timeout},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// observe counts a finished request under its route pattern (not its path,
// which would make a series per id).
func (m *metrics) observe(c *gin.Context, took time.Duration) {
	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	m.requests.WithLabelValues(route, c.Request.Method, strconv.Itoa(c.Writer.Status())).Inc()
	m.latency.WithLabelValues(route, c.Request.Method).Observe(took.Seconds())
}

func (m *metrics) handler() gin.HandlerFunc {
	h := promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	return gin.WrapH(h)
}

var (
	descDepth = prometheus.NewDesc("adaptflow_review_queue_depth",
		"Reviews waiting in a queue: open (nobody holds them) or claimed.", []string{"queue", "status"}, nil)
	descDecided = prometheus.NewDesc("adaptflow_reviews_decided_total",
		"Reviews decided by a reviewer.", []string{"queue"}, nil)
	descExpired = prometheus.NewDesc("adaptflow_reviews_expired_total",
		"Reviews whose SLA ran out before a reviewer decided.", []string{"queue"}, nil)
	descBreaches = prometheus.NewDesc("adaptflow_review_sla_breaches_total",
		"Reviews decided after they were due, or expired.", []string{"queue"}, nil)
	descToDecision = prometheus.NewDesc("adaptflow_review_time_to_decision_seconds",
		"Time from a review's opening to its decision.", []string{"queue"}, nil)
	descToClaim = prometheus.NewDesc("adaptflow_review_time_to_first_claim_seconds",
		"Time from a review's opening to its first claim.", []string{"queue"}, nil)
	descVerdicts = prometheus.NewDesc("adaptflow_review_classification_verdicts_total",
		"Verdicts reviewers gave on a model's classification.", []string{"queue"}, nil)
	descOverrides = prometheus.NewDesc("adaptflow_review_overrides_total",
		"Verdicts that changed the model's label (override rate = overrides / verdicts).", []string{"queue"}, nil)
	descScrapeErr = prometheus.NewDesc("adaptflow_review_stats_up",
		"1 when the review figures could be read from the store.", nil, nil)
)

// reviewCollector reads the review queues from the store at each scrape.
type reviewCollector struct {
	stats   ReviewStats
	timeout time.Duration
}

func (rc *reviewCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDepth, descDecided, descExpired, descBreaches, descToDecision, descToClaim, descVerdicts, descOverrides, descScrapeErr} {
		ch <- d
	}
}

func (rc *reviewCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), rc.timeout)
	defer cancel()
	stats, err := rc.stats.ReviewStats(ctx, time.Now())
	if err != nil {
		ch <- prometheus.MustNewConstMetric(descScrapeErr, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(descScrapeErr, prometheus.GaugeValue, 1)
	for _, q := range stats {
		ch <- prometheus.MustNewConstMetric(descDepth, prometheus.GaugeValue, float64(q.Open), q.Queue, "open")
		ch <- prometheus.MustNewConstMetric(descDepth, prometheus.GaugeValue, float64(q.Claimed), q.Queue, "claimed")
		ch <- prometheus.MustNewConstMetric(descDecided, prometheus.CounterValue, float64(q.Decided), q.Queue)
		ch <- prometheus.MustNewConstMetric(descExpired, prometheus.CounterValue, float64(q.Expired), q.Queue)
		ch <- prometheus.MustNewConstMetric(descBreaches, prometheus.CounterValue, float64(q.Breached), q.Queue)
		ch <- prometheus.MustNewConstSummary(descToDecision, uint64(q.Decided), q.DecisionSeconds, nil, q.Queue)
		ch <- prometheus.MustNewConstSummary(descToClaim, uint64(q.FirstClaims), q.FirstClaimSeconds, nil, q.Queue)
		ch <- prometheus.MustNewConstMetric(descVerdicts, prometheus.CounterValue, float64(q.Judged), q.Queue)
		ch <- prometheus.MustNewConstMetric(descOverrides, prometheus.CounterValue, float64(q.Overrides), q.Queue)
	}
}
