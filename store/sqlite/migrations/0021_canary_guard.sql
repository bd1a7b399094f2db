-- A canary's guard (JSON of store.CanaryGuard; empty: none): when it is
-- rolled back or promoted on its own.
ALTER TABLE policy_state ADD COLUMN canary_guard TEXT NOT NULL DEFAULT '';
