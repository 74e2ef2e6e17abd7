-- The durable queue: subscriptions and their bindings, one row per (subscription, event), and
-- the dead-letter table. Times are the server's clock, so that every process agrees on them.

CREATE TABLE tidings_subscriptions (
    name        TEXT PRIMARY KEY,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE tidings_bindings (
    subscription TEXT NOT NULL REFERENCES tidings_subscriptions (name) ON DELETE CASCADE,
    pattern      TEXT NOT NULL,
    PRIMARY KEY (subscription, pattern)
);

-- Bumped by every change to the bindings, so that publishers (in this process or another)
-- reload their routing table only when it changed.
CREATE TABLE tidings_queue_meta (
    key   TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO tidings_queue_meta (key, value) VALUES ('bindings_version', 0);

-- A message is ready when visible_at has passed. A claim sets lease_token and pushes
-- visible_at to the lease's end, so that an expired lease (a dead worker) makes it ready
-- again with no sweeper. An ack deletes the row.
CREATE TABLE tidings_messages (
    id               BIGSERIAL PRIMARY KEY,
    subscription     TEXT NOT NULL,
    topic            TEXT NOT NULL,
    content_type     TEXT,
    body             BYTEA NOT NULL,
    published_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    visible_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    lease_token      BIGINT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    first_failure_at TIMESTAMPTZ,
    last_error       TEXT
);
CREATE INDEX tidings_messages_queue ON tidings_messages (subscription, id);
CREATE INDEX tidings_messages_visible ON tidings_messages (subscription, visible_at);
CREATE INDEX tidings_messages_lease ON tidings_messages (lease_token)
    WHERE lease_token IS NOT NULL;

CREATE TABLE tidings_dead_letters (
    seq              BIGSERIAL PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    subscription     TEXT NOT NULL,
    handler          TEXT,
    topic            TEXT NOT NULL,
    content_type     TEXT,
    body             BYTEA NOT NULL,
    decodable        BOOLEAN NOT NULL,
    reason_kind      TEXT NOT NULL,
    reason_message   TEXT NOT NULL,
    attempts         INTEGER NOT NULL,
    first_failure_at TIMESTAMPTZ NOT NULL,
    last_failure_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX tidings_dead_letters_subscription ON tidings_dead_letters (subscription, seq);
