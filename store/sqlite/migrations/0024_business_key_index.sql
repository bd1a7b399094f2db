-- Instances found by business key alone, across processes
-- (GET /v1/instances?business_key=).
CREATE INDEX instances_business_key ON instances (business_key, created_at);
