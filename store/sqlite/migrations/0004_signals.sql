CREATE TABLE observations (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    process TEXT NOT NULL,
    signal  TEXT NOT NULL,
    at      INTEGER NOT NULL,
    value   REAL NOT NULL
);
CREATE INDEX observations_signal_time ON observations (process, signal, at);

CREATE TABLE detector_state (
    key     TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    state   TEXT NOT NULL
);
