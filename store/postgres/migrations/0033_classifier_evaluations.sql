-- Each classifier's last evaluation on its own examples (the JSON the API
-- answers with), shown on its process's page until the next one.
CREATE TABLE classifier_evaluations (
    classifier TEXT PRIMARY KEY,
    doc TEXT NOT NULL,
    evaluated_at BIGINT NOT NULL
);
