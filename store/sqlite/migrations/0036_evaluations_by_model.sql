-- A classifier's last evaluation of each model: the embedded classifier's
-- and the LLM's are kept apart (an LLM's no longer replaces the embedded
-- one's).
CREATE TABLE classifier_evaluations_by_model (
    classifier TEXT NOT NULL,
    model TEXT NOT NULL,
    doc TEXT NOT NULL,
    evaluated_at INTEGER NOT NULL,
    PRIMARY KEY (classifier, model)
);
INSERT INTO classifier_evaluations_by_model (classifier, model, doc, evaluated_at)
    SELECT classifier, CASE WHEN json_extract(doc, '$.model') LIKE 'llm:%' THEN 'llm' ELSE 'embedded' END, doc, evaluated_at FROM classifier_evaluations;
DROP TABLE classifier_evaluations;
ALTER TABLE classifier_evaluations_by_model RENAME TO classifier_evaluations;
