-- The API stores an instance before its workflow exists and hands the start
-- to Temporal; pending_start stays true until Temporal has the workflow, so
-- a start that a crash or an outage interrupted is finished by the sweeper.
ALTER TABLE instances ADD COLUMN pending_start BOOLEAN NOT NULL DEFAULT false;
CREATE INDEX instances_pending_start ON instances (created_at) WHERE pending_start;
