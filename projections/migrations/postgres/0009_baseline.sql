-- The PostgreSQL read model as of SQLite migration 9: the same tables, columns and
-- indexes (the test `both_dialects_migrate_to_one_schema` compares them). PostgreSQL
-- read models began at this version, so the history before it is not replayed here;
-- each later migration exists for both dialects, with the same version and name.
-- Integers are BIGINT (the projector binds 64-bit values), blobs BYTEA; text compares
-- and sorts by byte (COLLATE "C"), as SQLite's does, whatever the database's locale.

CREATE TABLE checkpoints (
    projection TEXT COLLATE "C" PRIMARY KEY,
    seq        BIGINT NOT NULL
);

CREATE TABLE secrets (
    project        TEXT COLLATE "C"   NOT NULL,
    id             TEXT COLLATE "C"   NOT NULL,
    name           TEXT COLLATE "C",
    secret_type    TEXT COLLATE "C"   NOT NULL,
    algorithm      TEXT COLLATE "C",
    bit_length     BIGINT,
    mode           TEXT COLLATE "C",
    expiration     TEXT COLLATE "C",
    expiration_ms  BIGINT,
    creator        TEXT COLLATE "C"   NOT NULL,
    created        TEXT COLLATE "C"   NOT NULL,
    created_ms     BIGINT NOT NULL,
    updated        TEXT COLLATE "C"   NOT NULL,
    content_type   TEXT COLLATE "C",
    version        BIGINT NOT NULL,
    seq            BIGINT NOT NULL,
    project_access BIGINT NOT NULL DEFAULT 1,
    acl            TEXT COLLATE "C",
    status         TEXT COLLATE "C"   NOT NULL DEFAULT 'active',
    purge_at       TEXT COLLATE "C",
    purge_at_ms    BIGINT,
    owning_service TEXT COLLATE "C",
    reference      TEXT COLLATE "C"   NOT NULL DEFAULT '',
    updated_ms     BIGINT NOT NULL DEFAULT 0,
    version_count  BIGINT NOT NULL DEFAULT 0,
    tags           TEXT COLLATE "C"   NOT NULL DEFAULT '{}',
    acl_created    TEXT COLLATE "C",
    acl_updated    TEXT COLLATE "C",
    PRIMARY KEY (project, id)
);

CREATE INDEX secrets_by_created ON secrets (project, created_ms, id);
CREATE INDEX secrets_by_name ON secrets (project, name);
CREATE INDEX secrets_by_id ON secrets (id);
CREATE INDEX secrets_by_reference ON secrets (reference);
CREATE INDEX secrets_by_expiration ON secrets (expiration_ms)
    WHERE status != 'expired' AND expiration_ms IS NOT NULL;
CREATE INDEX secrets_by_purge_at ON secrets (purge_at_ms) WHERE purge_at_ms IS NOT NULL;
CREATE INDEX secrets_by_version_count ON secrets (version_count)
    WHERE status = 'active' AND version_count > 1;

CREATE TABLE secret_payloads (
    project      TEXT COLLATE "C"   NOT NULL,
    secret_id    TEXT COLLATE "C"   NOT NULL,
    version_id   TEXT COLLATE "C"   NOT NULL,
    key_id       TEXT COLLATE "C"   NOT NULL,
    content_type TEXT COLLATE "C"   NOT NULL,
    nonce        BYTEA  NOT NULL,
    ciphertext   BYTEA  NOT NULL,
    created      TEXT COLLATE "C"   NOT NULL,
    created_ms   BIGINT,
    PRIMARY KEY (project, secret_id, version_id)
);

CREATE TABLE secret_metadata (
    project   TEXT COLLATE "C" NOT NULL,
    secret_id TEXT COLLATE "C" NOT NULL,
    key       TEXT COLLATE "C" NOT NULL,
    value     TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (project, secret_id, key)
);

CREATE TABLE skipped_commits (
    seq    BIGINT PRIMARY KEY,
    reason TEXT COLLATE "C" NOT NULL
);

CREATE TABLE secret_acl_users (
    project   TEXT COLLATE "C" NOT NULL,
    secret_id TEXT COLLATE "C" NOT NULL,
    user_id   TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (project, secret_id, user_id)
);

CREATE INDEX secret_acl_users_by_user ON secret_acl_users (user_id);

CREATE TABLE secret_stages (
    project    TEXT COLLATE "C" NOT NULL,
    secret_id  TEXT COLLATE "C" NOT NULL,
    stage      TEXT COLLATE "C" NOT NULL,
    version_id TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (project, secret_id, stage)
);

CREATE TABLE containers (
    project        TEXT COLLATE "C"   NOT NULL,
    id             TEXT COLLATE "C"   NOT NULL,
    name           TEXT COLLATE "C",
    container_type TEXT COLLATE "C"   NOT NULL,
    creator        TEXT COLLATE "C"   NOT NULL,
    created        TEXT COLLATE "C"   NOT NULL,
    created_ms     BIGINT NOT NULL,
    updated        TEXT COLLATE "C"   NOT NULL,
    project_access BIGINT NOT NULL DEFAULT 1,
    acl            TEXT COLLATE "C",
    version        BIGINT NOT NULL,
    seq            BIGINT NOT NULL,
    acl_created    TEXT COLLATE "C",
    acl_updated    TEXT COLLATE "C",
    PRIMARY KEY (project, id)
);

CREATE INDEX containers_by_id ON containers (id);
CREATE INDEX containers_by_created ON containers (project, created_ms, id);

CREATE TABLE container_secrets (
    project        TEXT COLLATE "C"   NOT NULL,
    container_id   TEXT COLLATE "C"   NOT NULL,
    position       BIGINT NOT NULL,
    name           TEXT COLLATE "C"   NOT NULL,
    secret_project TEXT COLLATE "C"   NOT NULL,
    secret_id      TEXT COLLATE "C"   NOT NULL,
    PRIMARY KEY (project, container_id, name, secret_id)
);

CREATE INDEX container_secrets_by_secret ON container_secrets (secret_id);

CREATE TABLE container_consumers (
    project      TEXT COLLATE "C" NOT NULL,
    container_id TEXT COLLATE "C" NOT NULL,
    name         TEXT COLLATE "C" NOT NULL,
    url          TEXT COLLATE "C" NOT NULL,
    created      TEXT COLLATE "C" NOT NULL DEFAULT '',
    PRIMARY KEY (project, container_id, name, url)
);

CREATE TABLE container_acl_users (
    project      TEXT COLLATE "C" NOT NULL,
    container_id TEXT COLLATE "C" NOT NULL,
    user_id      TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (project, container_id, user_id)
);

CREATE INDEX container_acl_users_by_user ON container_acl_users (user_id);

CREATE TABLE secret_consumers (
    project       TEXT COLLATE "C" NOT NULL,
    secret_id     TEXT COLLATE "C" NOT NULL,
    service       TEXT COLLATE "C" NOT NULL,
    resource_type TEXT COLLATE "C" NOT NULL,
    resource_id   TEXT COLLATE "C" NOT NULL,
    created       TEXT COLLATE "C" NOT NULL DEFAULT '',
    PRIMARY KEY (project, secret_id, service, resource_type, resource_id)
);

CREATE TABLE orders (
    project           TEXT COLLATE "C"   NOT NULL,
    id                TEXT COLLATE "C"   NOT NULL,
    order_type        TEXT COLLATE "C"   NOT NULL,
    status            TEXT COLLATE "C"   NOT NULL,
    meta              TEXT COLLATE "C"   NOT NULL,
    creator           TEXT COLLATE "C"   NOT NULL,
    created           TEXT COLLATE "C"   NOT NULL,
    created_ms        BIGINT NOT NULL,
    updated           TEXT COLLATE "C"   NOT NULL,
    secret_id         TEXT COLLATE "C",
    container_id      TEXT COLLATE "C",
    error_status_code BIGINT,
    error_reason      TEXT COLLATE "C",
    version           BIGINT NOT NULL,
    seq               BIGINT NOT NULL,
    PRIMARY KEY (project, id)
);

CREATE INDEX orders_by_id ON orders (id);
CREATE INDEX orders_by_created ON orders (project, created_ms, id);
CREATE INDEX orders_pending ON orders (created_ms) WHERE status = 'PENDING';

CREATE TABLE commit_heads (
    subject TEXT COLLATE "C"   NOT NULL PRIMARY KEY,
    version BIGINT NOT NULL,
    hash    TEXT COLLATE "C"   NOT NULL
);
