-- Owned by plan posts-location, phase 5 (drop-lat-lng): applied by `orch advance`.

-- migrate:up
ALTER TABLE posts DROP COLUMN lat, DROP COLUMN lng;

-- migrate:down
-- Re-creates the columns EMPTY: their values are gone with the up section.
ALTER TABLE posts ADD COLUMN lat NUMERIC, ADD COLUMN lng NUMERIC;
