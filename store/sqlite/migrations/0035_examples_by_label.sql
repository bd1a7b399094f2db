-- A classifier's examples by label: the listing counts each label's on
-- every page (an index-only scan) and pages through one label's.
CREATE INDEX examples_classifier_label ON examples (classifier, label, created_at, id);
