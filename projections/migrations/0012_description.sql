-- A secret's description (AWS's `Description`).
ALTER TABLE secrets ADD COLUMN description TEXT;
