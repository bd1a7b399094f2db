-- A classifier's last evaluation of each model: the embedded classifier's
-- and the LLM's are kept apart (an LLM's no longer replaces the embedded
-- one's).
ALTER TABLE classifier_evaluations ADD COLUMN model TEXT NOT NULL DEFAULT 'embedded';
UPDATE classifier_evaluations SET model = 'llm' WHERE doc::jsonb->>'model' LIKE 'llm:%';
ALTER TABLE classifier_evaluations ALTER COLUMN model DROP DEFAULT;
ALTER TABLE classifier_evaluations DROP CONSTRAINT classifier_evaluations_pkey;
ALTER TABLE classifier_evaluations ADD PRIMARY KEY (classifier, model);
