-- Rotation: the secret's rotation as the domain folds it (JSON: handler, rules,
-- enabled, last and next rotation, the run under way), and when keyledger's rotation
-- runner must next act on it. Only secrets with rotation configured are indexed.
ALTER TABLE secrets ADD COLUMN rotation TEXT;
ALTER TABLE secrets ADD COLUMN rotation_due_ms INTEGER;
CREATE INDEX secrets_by_rotation_due ON secrets (rotation_due_ms)
    WHERE rotation_due_ms IS NOT NULL;
