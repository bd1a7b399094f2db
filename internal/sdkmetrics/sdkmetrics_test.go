package sdkmetrics_test

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/adaptflow/adaptflow/internal/sdkmetrics"
)

func TestHandler(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := sdkmetrics.New(reg)
	q := h.WithTags(map[string]string{"namespace": "default", "task_queue": "adaptflow"})
	q.WithTags(map[string]string{"activity_type": "Decide"}).Timer("temporal_activity_schedule_to_start_latency").Record(30 * time.Millisecond)
	q.WithTags(map[string]string{"activity_type": "Decide"}).Timer("temporal_activity_schedule_to_start_latency").Record(2 * time.Second)
	q.Counter("temporal_request").Inc(2)
	q.Counter("temporal_request").Inc(3)
	q.WithTags(map[string]string{"worker_type": "ActivityWorker"}).Gauge("temporal_worker_task_slots_available").Update(998)
	// Other tags for a name seen before: a missing label is empty, an
	// extra tag is left out.
	h.WithTags(map[string]string{"task_queue": "other", "operation": "Poll"}).Counter("temporal_request").Inc(1)
	// A name of another kind than its first use counts nothing, and does
	// not panic.
	q.Gauge("temporal_request_total").Update(1)

	want := `
# HELP temporal_activity_schedule_to_start_latency_seconds Temporal SDK timer temporal_activity_schedule_to_start_latency_seconds, in seconds.
# TYPE temporal_activity_schedule_to_start_latency_seconds histogram
temporal_activity_schedule_to_start_latency_seconds_bucket{activity_type="Decide",namespace="default",task_queue="adaptflow",le="0.001"} 0
temporal_activity_schedule_to_start_latency_seconds_bucket{activity_type="Decide",namespace="default",task_queue="adaptflow",le="0.0025"} 0
temporal_activity_schedule_to_start_latency_seconds_bucket{activity_type="Decide",namespace="default",task_queue="adaptflow",le="0.00625"} 0
temporal_activity_schedule_to_start_latency_seconds_bucket{activity_type="Decide",namespace="default",task_queue="adaptflow",le="0.015625"} 0
temporal_activity_schedule_to_start_latency_seconds_bucket{activity_type="Decide",namespace="default",task_queue="adaptflow",le="0.0390625"} 1
temporal_activity_schedule_to_start_latency_seconds_bucket{activity_type="Decide",namespace="default",task_queue="adaptflow",le="0.09765625"} 1
temporal_activity_schedule_to_start_latency_seconds_bucket{activity_type="Decide",namespace="default",task_queue="adaptflow",le="0.244140625"} 1
temporal_activity_schedule_to_start_latency_seconds_bucket{activity_type="Decide",namespace="default",task_queue="adaptflow",le="0.6103515625"} 1
temporal_activity_schedule_to_start_latency_seconds_bucket{activity_type="Decide",namespace="default",task_queue="adaptflow",le="1.52587890625"} 1
temporal_activity_schedule_to_start_latency_seconds_bucket{activity_type="Decide",namespace="default",task_queue="adaptflow",le="3.814697265625"} 2
temporal_activity_schedule_to_start_latency_seconds_bucket{activity_type="Decide",namespace="default",task_queue="adaptflow",le="9.5367431640625"} 2
temporal_activity_schedule_to_start_latency_seconds_bucket{activity_type="Decide",namespace="default",task_queue="adaptflow",le="23.84185791015625"} 2
temporal_activity_schedule_to_start_latency_seconds_bucket{activity_type="Decide",namespace="default",task_queue="adaptflow",le="59.604644775390625"} 2
temporal_activity_schedule_to_start_latency_seconds_bucket{activity_type="Decide",namespace="default",task_queue="adaptflow",le="149.01161193847656"} 2
temporal_activity_schedule_to_start_latency_seconds_bucket{activity_type="Decide",namespace="default",task_queue="adaptflow",le="+Inf"} 2
temporal_activity_schedule_to_start_latency_seconds_sum{activity_type="Decide",namespace="default",task_queue="adaptflow"} 2.03
temporal_activity_schedule_to_start_latency_seconds_count{activity_type="Decide",namespace="default",task_queue="adaptflow"} 2
# HELP temporal_request_total Temporal SDK counter temporal_request_total.
# TYPE temporal_request_total counter
temporal_request_total{namespace="",task_queue="other"} 1
temporal_request_total{namespace="default",task_queue="adaptflow"} 5
# HELP temporal_worker_task_slots_available Temporal SDK gauge temporal_worker_task_slots_available.
# TYPE temporal_worker_task_slots_available gauge
temporal_worker_task_slots_available{namespace="default",task_queue="adaptflow",worker_type="ActivityWorker"} 998
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}
