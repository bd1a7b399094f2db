-- The instances that failed, by when: the list of processes counts those
-- of the last day on every read.
CREATE INDEX instances_failed ON instances (finished_at, process) WHERE status = 'failed';
