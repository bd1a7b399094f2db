-- A retry of a failed instance that waits for a slot under its process's
-- concurrency limit: who asked and why (store.Instance.RetryQueued); ''
-- for none. The instance is queued (pending start and queued) meanwhile.
ALTER TABLE instances ADD COLUMN retry_queued TEXT NOT NULL DEFAULT '';
