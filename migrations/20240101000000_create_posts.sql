-- migrate:up
CREATE TABLE posts (
    id         SERIAL PRIMARY KEY,
    url        VARCHAR(300),
    lat        NUMERIC,
    lng        NUMERIC,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- migrate:down
DROP TABLE posts;
