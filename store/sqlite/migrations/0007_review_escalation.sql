-- When a review's SLA ran out and it moved to another queue.
ALTER TABLE reviews ADD COLUMN escalated_at INTEGER;
