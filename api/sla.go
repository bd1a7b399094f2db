package api

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/adaptflow/adaptflow/store"
	"github.com/adaptflow/adaptflow/workflows"
)

// slaCache keeps the SLA of each definition version read: a version is
// immutable once registered, so its SLA never changes.
type slaCache struct {
	mu sync.Mutex
	m  map[string]time.Duration
}

// slaCacheMax bounds the cache; past it, it starts again empty.
const slaCacheMax = 10_000

// versionSLA is the SLA of a process's definition version (0: none).
func (s *server) versionSLA(ctx context.Context, name string, version int) (time.Duration, error) {
	key := fmt.Sprintf("%s@%d", name, version)
	s.slas.mu.Lock()
	sla, ok := s.slas.m[key]
	s.slas.mu.Unlock()
	if ok {
		return sla, nil
	}
	def, _, err := s.definition(ctx, name, version)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil // no definition to hold an SLA (not kept for next time)
	}
	if err != nil {
		return 0, err
	}
	sla = def.SLADuration()
	s.slas.mu.Lock()
	if s.slas.m == nil || len(s.slas.m) >= slaCacheMax {
		s.slas.m = map[string]time.Duration{}
	}
	s.slas.m[key] = sla
	s.slas.mu.Unlock()
	return sla, nil
}

// processSLAs are the SLAs of every version of a process's definition
// that has one.
func (s *server) processSLAs(ctx context.Context, name string) (map[int]time.Duration, error) {
	versions, err := s.Definitions.DefinitionVersions(ctx, name)
	if err != nil {
		return nil, err
	}
	out := map[int]time.Duration{}
	for _, v := range versions {
		sla, err := s.versionSLA(ctx, name, v)
		if err != nil {
			return nil, err
		}
		if sla > 0 {
			out[v] = sla
		}
	}
	return out, nil
}

// slaFields adds to an instance's JSON when it is due by its version's
// SLA (due_at) and where it stands against it now (sla_status; none for a
// canceled one).
func (s *server) slaFields(ctx context.Context, out gin.H, inst store.Instance, st workflows.State) error {
	sla, err := s.versionSLA(ctx, inst.Process, inst.ProcessVersion)
	if err != nil || sla <= 0 {
		return err
	}
	out["due_at"] = inst.CreatedAt.Add(sla).UTC()
	if standing := store.SLAStanding(sla, st.Status, inst.CreatedAt, inst.FinishedAt, time.Now()); standing != "" {
		out["sla_status"] = standing
	}
	return nil
}

// withSLA is a listed instance with when it is due by sla and where it
// stands against it at now (unchanged without an SLA).
func withSLA(in store.InstanceSummary, sla time.Duration, now time.Time) store.InstanceSummary {
	if sla <= 0 {
		return in
	}
	due := in.CreatedAt.Add(sla)
	finished := time.Time{}
	if in.FinishedAt != nil {
		finished = *in.FinishedAt
	}
	in.DueAt, in.SLAStatus = &due, store.SLAStanding(sla, in.Status, in.CreatedAt, finished, now)
	return in
}

var (
	descOverdue = prometheus.NewDesc("adaptflow_instances_overdue",
		"Instances running past their definition version's SLA now, by process (read from the store at most every 30 s, alike in every API replica: take the max over replicas).", []string{"process"}, nil)
	descQueued = prometheus.NewDesc("adaptflow_instances_queued",
		"Instances queued under their process's concurrency limit now, by process (read from the store at most every 30 s, alike in every API replica: take the max over replicas).", []string{"process"}, nil)
	descPendingWebhooks = prometheus.NewDesc("adaptflow_webhooks_pending",
		"Webhooks given up and not redelivered yet, by process (read from the store at most every 30 s, alike in every API replica: take the max over replicas).", []string{"process"}, nil)
)

// overdueCollector counts the instances of each process with an SLA that
// run past it, and those queued under a concurrency limit, at a scrape,
// at most every overdueEvery (scrapes in between get the last counts).
type overdueCollector struct {
	s       *server
	mu      sync.Mutex
	at      time.Time
	counts  map[string]int
	queued  map[string]int
	pending map[string]int // webhooks
}

// overdueEvery bounds how often a replica counts the overdue instances.
const overdueEvery = 30 * time.Second

func (oc *overdueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descOverdue
	ch <- descQueued
	ch <- descPendingWebhooks
}

func (oc *overdueCollector) Collect(ch chan<- prometheus.Metric) {
	oc.mu.Lock()
	defer oc.mu.Unlock()
	if oc.counts == nil || time.Since(oc.at) > overdueEvery {
		if counts, ok := oc.count(); ok {
			oc.counts, oc.at = counts, time.Now()
		}
		if oc.s.Instances != nil {
			ctx, cancel := context.WithTimeout(context.Background(), oc.s.Timeout)
			if queued, err := oc.s.Instances.QueuedCounts(ctx); err == nil {
				oc.queued = queued
			}
			cancel()
		}
		if oc.s.Webhooks != nil {
			ctx, cancel := context.WithTimeout(context.Background(), oc.s.Timeout)
			if pending, err := oc.s.Webhooks.PendingWebhooks(ctx); err == nil {
				oc.pending = pending
			}
			cancel()
		}
	}
	for desc, counts := range map[*prometheus.Desc]map[string]int{descOverdue: oc.counts, descQueued: oc.queued, descPendingWebhooks: oc.pending} {
		for _, name := range slices.Sorted(maps.Keys(counts)) {
			ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(counts[name]), name)
		}
	}
}

// count counts, per process with an SLA, its instances running past it;
// false when the store did not answer.
func (oc *overdueCollector) count() (map[string]int, bool) {
	s := oc.s
	if s.Definitions == nil || s.Instances == nil {
		return nil, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.Timeout)
	defer cancel()
	defs, err := s.Definitions.Definitions(ctx)
	if err != nil {
		return nil, false
	}
	now := time.Now()
	counts := map[string]int{}
	for _, d := range defs {
		if _, seen := counts[d.Name]; seen {
			continue
		}
		slas, err := s.processSLAs(ctx, d.Name)
		if err != nil {
			return nil, false
		}
		if len(slas) == 0 {
			continue
		}
		n, err := s.Instances.CountInstances(ctx, store.InstanceFilter{Process: d.Name, SLA: store.SLAOverdue, SLAs: slas, Now: now})
		if err != nil {
			return nil, false
		}
		counts[d.Name] = n
	}
	return counts, true
}
