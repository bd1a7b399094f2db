-- A classifier's examples in the order of their addition: its listing
-- pages through them newest first, and training reads them oldest first.
-- It serves what the index by classifier alone served.
CREATE INDEX examples_classifier_created ON examples (classifier, created_at, id);
DROP INDEX examples_classifier;
