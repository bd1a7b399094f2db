-- Policy lifecycle: each policy has at most one active and one shadow
-- version (or none: disabled), versions form a hash chain, and decisions
-- carry their process for scans by process and time.
CREATE TABLE policy_state (
    id             TEXT PRIMARY KEY,
    process        TEXT NOT NULL,
    active_version INTEGER,
    shadow_version INTEGER,
    changed_seq    INTEGER NOT NULL,
    changed_by     TEXT NOT NULL DEFAULT '',
    changed_at     INTEGER NOT NULL DEFAULT 0
);
INSERT INTO policy_state (id, process, active_version, shadow_version, changed_seq)
    SELECT id, process, active_version, NULL, changed_seq FROM policies;
DROP TABLE policies;
CREATE INDEX policy_state_process ON policy_state (process);

ALTER TABLE policy_versions ADD COLUMN prev_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE policy_versions ADD COLUMN hash TEXT NOT NULL DEFAULT '';

-- Every change of state (activate, shadow, disable) is logged, attributed.
CREATE TABLE policy_events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL,
    version    INTEGER NOT NULL,
    action     TEXT NOT NULL,
    author     TEXT NOT NULL,
    note       TEXT NOT NULL DEFAULT '',
    at         INTEGER NOT NULL
);

ALTER TABLE decisions ADD COLUMN process TEXT NOT NULL DEFAULT '';
CREATE INDEX decisions_process_time ON decisions (process, time);
