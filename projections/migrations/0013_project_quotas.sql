-- Project quotas, as the service admin set them: a JSON object of limits by
-- resource ({"secrets": 10, ...}); a resource not named is unlimited. A project
-- without a row has no quotas of its own.
CREATE TABLE project_quotas (
    project TEXT    NOT NULL PRIMARY KEY,
    limits  TEXT    NOT NULL,
    updated TEXT    NOT NULL,
    seq     INTEGER NOT NULL
) WITHOUT ROWID;
