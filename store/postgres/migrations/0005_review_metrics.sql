-- When a review was first claimed (time to first claim), and what reviewers
-- said about classifications (the model's quality, override rates).
ALTER TABLE reviews ADD COLUMN first_claimed_at BIGINT;
CREATE TABLE verdicts (
    review_id  TEXT PRIMARY KEY,
    classifier TEXT NOT NULL,
    queue      TEXT NOT NULL,
    model      TEXT NOT NULL,
    predicted  TEXT NOT NULL,
    confidence DOUBLE PRECISION NOT NULL,
    label      TEXT NOT NULL,
    reviewer   TEXT NOT NULL,
    at         BIGINT NOT NULL
);
CREATE INDEX verdicts_classifier_at ON verdicts (classifier, at);
