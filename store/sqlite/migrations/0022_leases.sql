-- Which replica runs a background job (sweeps, canary guards, pruning),
-- until when (micros); see store.Lease.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
