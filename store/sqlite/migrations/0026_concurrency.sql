-- An instance queued under its process's concurrency limit: stored, its
-- workflow not started until a slot frees (store.Instance.Queued). The
-- index serves the count of a process's instances that hold a slot.
ALTER TABLE instances ADD COLUMN queued INTEGER NOT NULL DEFAULT 0;
CREATE INDEX instances_running ON instances (process) WHERE queued = 0 AND finished_at IS NULL;
