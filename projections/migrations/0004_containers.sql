-- Containers: named groups of secret references, with ACLs and consumers.
CREATE TABLE containers (
    project        TEXT    NOT NULL,
    id             TEXT    NOT NULL,
    name           TEXT,
    container_type TEXT    NOT NULL,
    creator        TEXT    NOT NULL,
    created        TEXT    NOT NULL,
    created_ms     INTEGER NOT NULL,
    updated        TEXT    NOT NULL,
    project_access INTEGER NOT NULL DEFAULT 1,
    acl            TEXT,
    version        INTEGER NOT NULL,
    seq            INTEGER NOT NULL,
    PRIMARY KEY (project, id)
) WITHOUT ROWID;

CREATE INDEX containers_by_id ON containers (id);
CREATE INDEX containers_by_created ON containers (project, created_ms, id);

-- A container's references, in the order given.
CREATE TABLE container_secrets (
    project        TEXT    NOT NULL,
    container_id   TEXT    NOT NULL,
    position       INTEGER NOT NULL,
    name           TEXT    NOT NULL,
    secret_project TEXT    NOT NULL,
    secret_id      TEXT    NOT NULL,
    PRIMARY KEY (project, container_id, name, secret_id)
) WITHOUT ROWID;

-- Which containers reference a secret (expiry shows on them).
CREATE INDEX container_secrets_by_secret ON container_secrets (secret_id);

CREATE TABLE container_consumers (
    project      TEXT NOT NULL,
    container_id TEXT NOT NULL,
    name         TEXT NOT NULL,
    url          TEXT NOT NULL,
    PRIMARY KEY (project, container_id, name, url)
) WITHOUT ROWID;

CREATE TABLE container_acl_users (
    project      TEXT NOT NULL,
    container_id TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    PRIMARY KEY (project, container_id, user_id)
) WITHOUT ROWID;

CREATE INDEX container_acl_users_by_user ON container_acl_users (user_id);
