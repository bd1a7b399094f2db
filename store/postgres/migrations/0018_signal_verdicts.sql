-- Each observation of a signal keeps the detector's verdict, as policies saw it, and the instance it came from (none for an arrival rate);
-- an instance's observation of a signal, and an arrival rate's of a boundary, is kept once. Rows from before have no verdict (score NULL).
ALTER TABLE observations ADD COLUMN instance_id TEXT NOT NULL DEFAULT '';
ALTER TABLE observations ADD COLUMN score DOUBLE PRECISION;
ALTER TABLE observations ADD COLUMN anomalous INTEGER NOT NULL DEFAULT 0;
ALTER TABLE observations ADD COLUMN warming_up INTEGER NOT NULL DEFAULT 0;
ALTER TABLE observations ADD COLUMN recurring INTEGER NOT NULL DEFAULT 0;
ALTER TABLE observations ADD COLUMN expected DOUBLE PRECISION;
ALTER TABLE observations ADD COLUMN low DOUBLE PRECISION;
ALTER TABLE observations ADD COLUMN high DOUBLE PRECISION;
ALTER TABLE observations ADD COLUMN reason TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX observations_instance ON observations (process, signal, instance_id) WHERE instance_id <> '';
CREATE UNIQUE INDEX observations_boundary ON observations (process, signal, at) WHERE instance_id = '' AND score IS NOT NULL;
-- The history of a signal reads from the index alone.
CREATE INDEX observations_history ON observations (process, signal, at) INCLUDE (value, anomalous, expected, low, high);
DROP INDEX observations_signal_time;
CREATE INDEX observations_flagged ON observations (process, signal, at) WHERE anomalous = 1;
