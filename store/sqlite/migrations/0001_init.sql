CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);

CREATE TABLE definitions (
    name       TEXT NOT NULL,
    version    INTEGER NOT NULL,
    doc        TEXT NOT NULL,
    digest     TEXT NOT NULL,
    author     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE policy_versions (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL,
    version    INTEGER NOT NULL,
    process    TEXT NOT NULL,
    doc        TEXT NOT NULL,
    digest     TEXT NOT NULL,
    author     TEXT NOT NULL,
    note       TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    UNIQUE (id, version)
);

-- The version of each policy that is in force.
CREATE TABLE policies (
    id             TEXT PRIMARY KEY,
    process        TEXT NOT NULL,
    active_version INTEGER NOT NULL,
    changed_seq    INTEGER NOT NULL
);
CREATE INDEX policies_process ON policies (process);

CREATE TABLE instances (
    id              TEXT PRIMARY KEY,
    process         TEXT NOT NULL,
    process_version INTEGER NOT NULL,
    business_key    TEXT NOT NULL,
    input           TEXT NOT NULL,
    created_by      TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    UNIQUE (process, business_key)
);
CREATE INDEX instances_process_time ON instances (process, created_at);

CREATE TABLE decisions (
    id          TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    step        TEXT NOT NULL,
    time        INTEGER NOT NULL,
    record      TEXT NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL,
    UNIQUE (run_id, seq)
);
CREATE INDEX decisions_instance ON decisions (instance_id, time, seq);

CREATE TABLE reviews (
    id          TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    process     TEXT NOT NULL,
    step        TEXT NOT NULL,
    queue       TEXT NOT NULL,
    reason      TEXT NOT NULL,
    policy_id   TEXT NOT NULL DEFAULT '',
    decision_id TEXT NOT NULL DEFAULT '',
    status      TEXT NOT NULL,
    verdict     TEXT NOT NULL DEFAULT '',
    reviewer    TEXT NOT NULL DEFAULT '',
    comment     TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    due_at      INTEGER,
    decided_at  INTEGER
);
CREATE INDEX reviews_inbox ON reviews (status, queue, created_at);
CREATE INDEX reviews_instance ON reviews (instance_id);
