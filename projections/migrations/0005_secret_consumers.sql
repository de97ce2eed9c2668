-- Barbican's secret consumers: services whose resources use a secret.
CREATE TABLE secret_consumers (
    project       TEXT NOT NULL,
    secret_id     TEXT NOT NULL,
    service       TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id   TEXT NOT NULL,
    PRIMARY KEY (project, secret_id, service, resource_type, resource_id)
) WITHOUT ROWID;
