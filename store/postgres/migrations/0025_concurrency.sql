-- An instance queued under its process's concurrency limit: stored, its
-- workflow not started until a slot frees (store.Instance.Queued). The
-- indexes serve the count of a process's instances that hold a slot, and
-- the queue in order (an admission looks for an older queued instance).
ALTER TABLE instances ADD COLUMN queued BOOLEAN NOT NULL DEFAULT false;
CREATE INDEX instances_running ON instances (process, status) WHERE NOT queued AND finished_at IS NULL;
CREATE INDEX instances_queued ON instances (process, created_at, id) WHERE pending_start AND queued;
