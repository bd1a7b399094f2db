-- Each instance's state as its workflow last saved it (a projection), so
-- that reading an instance needs no Temporal query. state_seq orders the
-- saves of one run; a save with a lower number than the stored one is stale.
ALTER TABLE instances ADD COLUMN state TEXT;
ALTER TABLE instances ADD COLUMN state_run TEXT NOT NULL DEFAULT '';
ALTER TABLE instances ADD COLUMN state_seq BIGINT NOT NULL DEFAULT 0;
