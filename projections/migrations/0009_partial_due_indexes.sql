-- Most secrets never expire and hold one version, so the scheduler never finds them
-- due; indexing them anyway cost every create one more index page written at a random
-- place (their key is NULL or 1, then the secret's id), and those pages are most of
-- the projector's cost at a million secrets. The scheduler's queries imply these
-- conditions (`expiration_ms <= ?` implies NOT NULL; the prune query looks for more
-- than `--keep-versions` versions, which is at least 1, and says `version_count > 1`
-- so that SQLite sees it), so they still use the indexes (`read/due.rs` checks the
-- plans).
DROP INDEX secrets_by_expiration;
CREATE INDEX secrets_by_expiration ON secrets (expiration_ms)
    WHERE status != 'expired' AND expiration_ms IS NOT NULL;

DROP INDEX secrets_by_version_count;
CREATE INDEX secrets_by_version_count ON secrets (version_count)
    WHERE status = 'active' AND version_count > 1;
