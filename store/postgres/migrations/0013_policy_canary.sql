-- A canary: the shadow version applied, in place of the active one, to a
-- share of the instances (1 to 99 percent; 0 is a plain shadow).
ALTER TABLE policy_state ADD COLUMN shadow_percent INTEGER NOT NULL DEFAULT 0;
ALTER TABLE policy_events ADD COLUMN percent INTEGER NOT NULL DEFAULT 0;
