-- Whether a process's new instances are held (the process is paused), by
-- whom, when and why; see store.ProcessState.
CREATE TABLE process_states (
    process    TEXT PRIMARY KEY,
    paused     INTEGER NOT NULL,
    changed_by TEXT NOT NULL,
    changed_at INTEGER NOT NULL,
    note       TEXT NOT NULL DEFAULT ''
);
