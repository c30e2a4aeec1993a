-- Owned by plan posts-location, phase 1 (add-loc): applied by `orch advance`.

-- migrate:up
ALTER TABLE posts ADD COLUMN loc POINT;

-- migrate:down
ALTER TABLE posts DROP COLUMN loc;
