-- The peer: the same log in PostgreSQL with the same constraints (gapless-ish positions, unique
-- event ids, unique revision per stream), fsync and synchronous_commit on.
CREATE TABLE events (
    position    bigserial PRIMARY KEY,
    stream      text        NOT NULL,
    revision    bigint      NOT NULL,
    id          uuid        NOT NULL UNIQUE,
    type        text        NOT NULL,
    data        jsonb       NOT NULL,
    metadata    jsonb       NOT NULL DEFAULT '{}',
    recorded_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream, revision)
);
