CREATE TABLE observations (
    seq     BIGSERIAL PRIMARY KEY,
    process TEXT NOT NULL,
    signal  TEXT NOT NULL,
    at      BIGINT NOT NULL,
    value   DOUBLE PRECISION NOT NULL
);
CREATE INDEX observations_signal_time ON observations (process, signal, at);

CREATE TABLE detector_state (
    key     TEXT PRIMARY KEY,
    version BIGINT NOT NULL,
    state   TEXT NOT NULL
);
