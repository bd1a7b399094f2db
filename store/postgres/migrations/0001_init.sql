-- adaptflow on PostgreSQL. Documents and records are TEXT, not JSONB: their
-- exact bytes are hashed. Times are microseconds since the Unix epoch.
CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE definitions (
    name       TEXT NOT NULL,
    version    INTEGER NOT NULL,
    doc        TEXT NOT NULL,
    digest     TEXT NOT NULL,
    author     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE policy_versions (
    seq        BIGSERIAL PRIMARY KEY,
    id         TEXT NOT NULL,
    version    INTEGER NOT NULL,
    process    TEXT NOT NULL,
    doc        TEXT NOT NULL,
    digest     TEXT NOT NULL,
    author     TEXT NOT NULL,
    note       TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL,
    UNIQUE (id, version)
);

CREATE TABLE policy_state (
    id             TEXT PRIMARY KEY,
    process        TEXT NOT NULL,
    active_version INTEGER,
    shadow_version INTEGER,
    changed_seq    BIGINT NOT NULL,
    changed_by     TEXT NOT NULL DEFAULT '',
    changed_at     BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX policy_state_process ON policy_state (process);

CREATE TABLE policy_events (
    seq     BIGSERIAL PRIMARY KEY,
    id      TEXT NOT NULL,
    version INTEGER NOT NULL,
    action  TEXT NOT NULL,
    author  TEXT NOT NULL,
    note    TEXT NOT NULL DEFAULT '',
    at      BIGINT NOT NULL
);

CREATE TABLE instances (
    id              TEXT PRIMARY KEY,
    process         TEXT NOT NULL,
    process_version INTEGER NOT NULL,
    business_key    TEXT NOT NULL,
    input           TEXT NOT NULL,
    created_by      TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    UNIQUE (process, business_key)
);
CREATE INDEX instances_process_time ON instances (process, created_at);

CREATE TABLE decisions (
    id          TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    step        TEXT NOT NULL,
    time        BIGINT NOT NULL,
    record      TEXT NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL,
    process     TEXT NOT NULL,
    UNIQUE (run_id, seq)
);
CREATE INDEX decisions_instance ON decisions (instance_id, time, seq);
CREATE INDEX decisions_process_time ON decisions (process, time);

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
    created_at  BIGINT NOT NULL,
    due_at      BIGINT,
    decided_at  BIGINT
);
CREATE INDEX reviews_inbox ON reviews (status, queue, created_at);
CREATE INDEX reviews_instance ON reviews (instance_id);
