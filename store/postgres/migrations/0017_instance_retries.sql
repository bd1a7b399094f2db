-- A retry of a failed run of an instance goes ahead once: the run being retried, and since when.
ALTER TABLE instances ADD COLUMN retry_run TEXT NOT NULL DEFAULT '';
ALTER TABLE instances ADD COLUMN retry_at BIGINT NOT NULL DEFAULT 0;
