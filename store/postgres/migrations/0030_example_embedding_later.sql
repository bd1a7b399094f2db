-- An example whose embedding the provider could not give when it was
-- stored (a reviewer's lesson while the embeddings endpoint is down) is
-- kept without one, and embedded later by the API's sweep.
ALTER TABLE examples ALTER COLUMN embedding DROP NOT NULL;
-- The sweeper looks for them every pass.
CREATE INDEX examples_to_embed ON examples (created_at, id) WHERE embedding IS NULL;
