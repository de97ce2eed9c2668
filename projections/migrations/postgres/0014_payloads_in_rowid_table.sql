-- SQLite's twin moves sealed payloads out of a WITHOUT ROWID table, whose rows spill
-- into overflow pages past about 1 KB. PostgreSQL stores every table as a heap with
-- its primary key in a separate index already, so there is nothing to change here.
SELECT 1;
