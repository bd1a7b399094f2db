-- Whether a process's schedule is paused, by whom, when and why; see
-- store.ScheduleState.
CREATE TABLE schedule_states (
    process    TEXT NOT NULL,
    schedule   TEXT NOT NULL,
    paused     INTEGER NOT NULL,
    changed_by TEXT NOT NULL,
    changed_at INTEGER NOT NULL,
    note       TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (process, schedule)
);
