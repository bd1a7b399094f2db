-- Each instance's status as last saved, and when it first reached a final
-- status (completed, failed, rejected): what the process KPIs read.
-- Instances that ended before this migration keep no finish time.
ALTER TABLE instances ADD COLUMN status TEXT NOT NULL DEFAULT '';
ALTER TABLE instances ADD COLUMN finished_at INTEGER;
UPDATE instances SET status = COALESCE(json_extract(state, '$.status'), '') WHERE state IS NOT NULL;
