-- Claims on reviews (a lease held by one reviewer), priority (raised by an
-- escalation) and the inbox order: higher priority first, then by due time,
-- reviews without one last.
ALTER TABLE reviews ADD COLUMN claimed_by TEXT NOT NULL DEFAULT '';
ALTER TABLE reviews ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
ALTER TABLE reviews ADD COLUMN claim_expires_at INTEGER;
CREATE INDEX reviews_due ON reviews (status, (-priority), COALESCE(due_at, 9223372036854775807), created_at, id);
CREATE INDEX reviews_claims ON reviews (claimed_by, claim_expires_at) WHERE claimed_by <> '';
