-- A version per classifier, bumped in the transaction that writes one of its
-- examples, so a worker can tell without reading them whether a
-- classifier's examples changed.
CREATE TABLE example_versions (
    classifier TEXT PRIMARY KEY,
    version    BIGINT NOT NULL
);
INSERT INTO example_versions (classifier, version) SELECT classifier, count(*) FROM examples GROUP BY classifier;
