-- When an ACL was set (and last changed) and when each consumer was registered, which
-- Barbican's clients read (`created`, `updated`). An ACL reset to the default has no
-- times, as in Barbican, where the reset deletes the ACL. The times come from the
-- commits, so this migration empties the read model and its checkpoint: the
-- projector folds the log again from sequence 1.
ALTER TABLE secrets ADD COLUMN acl_created TEXT;
ALTER TABLE secrets ADD COLUMN acl_updated TEXT;
ALTER TABLE containers ADD COLUMN acl_created TEXT;
ALTER TABLE containers ADD COLUMN acl_updated TEXT;
ALTER TABLE secret_consumers ADD COLUMN created TEXT NOT NULL DEFAULT '';
ALTER TABLE container_consumers ADD COLUMN created TEXT NOT NULL DEFAULT '';

DELETE FROM secret_payloads;
DELETE FROM secret_metadata;
DELETE FROM secret_acl_users;
DELETE FROM secret_stages;
DELETE FROM secret_consumers;
DELETE FROM secrets;
DELETE FROM container_secrets;
DELETE FROM container_consumers;
DELETE FROM container_acl_users;
DELETE FROM containers;
DELETE FROM orders;
DELETE FROM skipped_commits;
DELETE FROM commit_heads;
DELETE FROM checkpoints;
