-- Per-secret ACLs. `acl` holds the secret's whole read ACL as the log states it
-- (JSON of domain::secret::acl::Acl; NULL is the default: project access, nobody
-- listed). The policy reads it from the secret's row: one primary-key lookup per check.
ALTER TABLE secrets ADD COLUMN project_access INTEGER NOT NULL DEFAULT 1;
ALTER TABLE secrets ADD COLUMN acl TEXT;

-- Secrets are addressed by id alone: a user on a secret's ACL may read it from
-- another project.
CREATE INDEX secrets_by_id ON secrets (id);

-- Who is listed where: narrows listings, and answers `acl_only=true`.
CREATE TABLE secret_acl_users (
    project   TEXT NOT NULL,
    secret_id TEXT NOT NULL,
    user_id   TEXT NOT NULL,
    PRIMARY KEY (project, secret_id, user_id)
) WITHOUT ROWID;

CREATE INDEX secret_acl_users_by_user ON secret_acl_users (user_id);
