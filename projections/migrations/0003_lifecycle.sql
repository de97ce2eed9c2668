-- Versions, staging labels, expiry, recoverable deletion, managed secrets, references
-- and tags. The new columns are derived from the log, and rows written before them
-- lack them, so this migration empties the read model and its checkpoint: the
-- projector then folds the log again from sequence 1 (the log is the only source of
-- truth; the read model can always be rebuilt).
DELETE FROM secret_acl_users;
DELETE FROM secret_payloads;
DELETE FROM secret_metadata;
DELETE FROM secrets;
DELETE FROM checkpoints;
DELETE FROM skipped_commits;

-- 'active', 'pending_deletion' (purge_at set) or 'expired' (the Expire command landed).
ALTER TABLE secrets ADD COLUMN status TEXT NOT NULL DEFAULT 'active';
ALTER TABLE secrets ADD COLUMN purge_at TEXT;
ALTER TABLE secrets ADD COLUMN purge_at_ms INTEGER;
ALTER TABLE secrets ADD COLUMN owning_service TEXT;
-- krn:keyledger:<project>:secret:<name>-<suffix>
ALTER TABLE secrets ADD COLUMN reference TEXT NOT NULL DEFAULT '';
ALTER TABLE secrets ADD COLUMN updated_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE secrets ADD COLUMN version_count INTEGER NOT NULL DEFAULT 0;
-- JSON object of the secret's tags.
ALTER TABLE secrets ADD COLUMN tags TEXT NOT NULL DEFAULT '{}';
ALTER TABLE secret_payloads ADD COLUMN created_ms INTEGER;

-- Which version each staging label is on.
CREATE TABLE secret_stages (
    project    TEXT NOT NULL,
    secret_id  TEXT NOT NULL,
    stage      TEXT NOT NULL,
    version_id TEXT NOT NULL,
    PRIMARY KEY (project, secret_id, stage)
) WITHOUT ROWID;

CREATE INDEX secrets_by_reference ON secrets (reference);
-- The scheduler's look-ups: expirations and recovery windows that have passed.
CREATE INDEX secrets_by_expiration ON secrets (expiration_ms) WHERE status != 'expired';
CREATE INDEX secrets_by_purge_at ON secrets (purge_at_ms) WHERE purge_at_ms IS NOT NULL;
CREATE INDEX secrets_by_version_count ON secrets (version_count) WHERE status = 'active';
