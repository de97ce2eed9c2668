-- Orders: what was asked, where it stands, and what it made.
CREATE TABLE orders (
    project           TEXT    NOT NULL,
    id                TEXT    NOT NULL,
    order_type        TEXT    NOT NULL,
    status            TEXT    NOT NULL,
    meta              TEXT    NOT NULL,
    creator           TEXT    NOT NULL,
    created           TEXT    NOT NULL,
    created_ms        INTEGER NOT NULL,
    updated           TEXT    NOT NULL,
    secret_id         TEXT,
    container_id      TEXT,
    error_status_code INTEGER,
    error_reason      TEXT,
    version           INTEGER NOT NULL,
    seq               INTEGER NOT NULL,
    PRIMARY KEY (project, id)
) WITHOUT ROWID;

CREATE INDEX orders_by_id ON orders (id);
CREATE INDEX orders_by_created ON orders (project, created_ms, id);
-- The order worker resumes what is still pending.
CREATE INDEX orders_pending ON orders (created_ms) WHERE status = 'PENDING';
