-- The examples stored without an embedding (an empty blob: the provider
-- did not answer), which the sweeper looks for every pass.
CREATE INDEX examples_to_embed ON examples (created_at, id) WHERE length(embedding) = 0;
