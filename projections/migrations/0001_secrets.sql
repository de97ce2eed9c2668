-- The read model of secrets. Rows hold metadata and sealed payloads only: the
-- ciphertext is useless without its data key, which lives in the key store.

-- The stream sequence each projection has applied, written in the same transaction
-- as the rows it covers.
CREATE TABLE checkpoints (
    projection TEXT PRIMARY KEY,
    seq        INTEGER NOT NULL
);

CREATE TABLE secrets (
    project       TEXT    NOT NULL,
    id            TEXT    NOT NULL,
    name          TEXT,
    secret_type   TEXT    NOT NULL,
    algorithm     TEXT,
    bit_length    INTEGER,
    mode          TEXT,
    expiration    TEXT,
    expiration_ms INTEGER,
    creator       TEXT    NOT NULL,
    created       TEXT    NOT NULL,
    created_ms    INTEGER NOT NULL,
    updated       TEXT    NOT NULL,
    content_type  TEXT,
    version       INTEGER NOT NULL,
    seq           INTEGER NOT NULL,
    PRIMARY KEY (project, id)
) WITHOUT ROWID;

-- Barbican lists a project's secrets oldest first; filters by name and type.
CREATE INDEX secrets_by_created ON secrets (project, created_ms, id);
CREATE INDEX secrets_by_name ON secrets (project, name);

CREATE TABLE secret_payloads (
    project      TEXT    NOT NULL,
    secret_id    TEXT    NOT NULL,
    version_id   TEXT    NOT NULL,
    key_id       TEXT    NOT NULL,
    content_type TEXT    NOT NULL,
    nonce        BLOB    NOT NULL,
    ciphertext   BLOB    NOT NULL,
    created      TEXT    NOT NULL,
    PRIMARY KEY (project, secret_id, version_id)
) WITHOUT ROWID;

CREATE TABLE secret_metadata (
    project   TEXT NOT NULL,
    secret_id TEXT NOT NULL,
    key       TEXT NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (project, secret_id, key)
) WITHOUT ROWID;

-- Commits the projector could not read (written by a newer keyledger, or damaged),
-- kept so an operator sees them instead of a silent gap.
CREATE TABLE skipped_commits (
    seq    INTEGER PRIMARY KEY,
    reason TEXT NOT NULL
);
