-- Instance listings filter a process's instances by status, newest first.
CREATE INDEX instances_process_status_time ON instances (process, status, created_at);
