-- Labeled examples with embeddings for nearest-neighbour search. The
-- dimension is fixed when this migration runs ({{EMBEDDING_DIM}}) and
-- recorded in settings; opening the store with another one is an error.
CREATE EXTENSION IF NOT EXISTS vector;

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
    embedding  vector({{EMBEDDING_DIM}}) NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX examples_classifier ON examples (classifier);
CREATE INDEX examples_embedding_hnsw ON examples USING hnsw (embedding vector_cosine_ops);
