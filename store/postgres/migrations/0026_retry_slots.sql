-- A retry claimed under a concurrency limit holds a slot until its new
-- run saves the instance's state (store.SlotsHeld): the index serves the
-- count of a process's recent claims.
CREATE INDEX instances_retrying ON instances (process, retry_at) WHERE retry_run <> '';
