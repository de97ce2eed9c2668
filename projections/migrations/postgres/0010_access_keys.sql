-- Access keys: AWS-style key pairs that stand for a principal. The secret access key
-- is held sealed (nonce + ciphertext, as a payload); its data key lives in the key
-- store and is destroyed when the key is revoked. Listings never read the ciphertext.
CREATE TABLE access_keys (
    project       TEXT COLLATE "C"   NOT NULL,
    access_key_id TEXT COLLATE "C"   NOT NULL,
    user_id       TEXT COLLATE "C"   NOT NULL,
    -- JSON array of role names.
    roles         TEXT COLLATE "C"   NOT NULL,
    service       TEXT COLLATE "C",
    -- 'active' or 'revoked'.
    status        TEXT COLLATE "C"   NOT NULL,
    creator       TEXT COLLATE "C"   NOT NULL,
    created       TEXT COLLATE "C"   NOT NULL,
    created_ms    BIGINT NOT NULL,
    revoked       TEXT COLLATE "C",
    key_id        TEXT COLLATE "C"   NOT NULL,
    version_id    TEXT COLLATE "C"   NOT NULL,
    nonce         BYTEA  NOT NULL,
    ciphertext    BYTEA  NOT NULL,
    version       BIGINT NOT NULL,
    seq           BIGINT NOT NULL,
    PRIMARY KEY (project, access_key_id)
);

-- SigV4 verification finds a key by its id alone.
CREATE INDEX access_keys_by_id ON access_keys (access_key_id);
