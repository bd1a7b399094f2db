-- Labeled examples with embeddings (little-endian float32). Searched
-- exactly in Go; the dimension is recorded in settings.
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO settings (key, value) VALUES ('embedding_dim', '{{EMBEDDING_DIM}}');

CREATE TABLE examples (
    id         TEXT PRIMARY KEY,
    classifier TEXT NOT NULL,
    text       TEXT NOT NULL,
    label      TEXT NOT NULL,
    fields     TEXT NOT NULL DEFAULT '',
    source     TEXT NOT NULL DEFAULT '',
    embedding  BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX examples_classifier ON examples (classifier);
