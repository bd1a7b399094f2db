-- Pruning (--store-retention, adaptflow prune) finds the instances that ended before a time.
CREATE INDEX instances_finished ON instances (finished_at) WHERE finished_at IS NOT NULL;
