-- Access keys: AWS-style key pairs that stand for a principal. The secret access key
-- is held sealed (nonce + ciphertext, as a payload); its data key lives in the key
-- store and is destroyed when the key is revoked. Listings never read the ciphertext.
CREATE TABLE access_keys (
    project       TEXT    NOT NULL,
    access_key_id TEXT    NOT NULL,
    user_id       TEXT    NOT NULL,
    -- JSON array of role names.
    roles         TEXT    NOT NULL,
    service       TEXT,
    -- 'active' or 'revoked'.
    status        TEXT    NOT NULL,
    creator       TEXT    NOT NULL,
    created       TEXT    NOT NULL,
    created_ms    INTEGER NOT NULL,
    revoked       TEXT,
    key_id        TEXT    NOT NULL,
    version_id    TEXT    NOT NULL,
    nonce         BLOB    NOT NULL,
    ciphertext    BLOB    NOT NULL,
    version       INTEGER NOT NULL,
    seq           INTEGER NOT NULL,
    PRIMARY KEY (project, access_key_id)
) WITHOUT ROWID;

-- SigV4 verification finds a key by its id alone.
CREATE INDEX access_keys_by_id ON access_keys (access_key_id);
