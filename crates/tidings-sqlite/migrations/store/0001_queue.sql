-- The durable queue: subscriptions and their bindings, one row per (subscription, event), and
-- the dead-letter table. Times are Unix milliseconds.

CREATE TABLE tidings_subscriptions (
    name        TEXT PRIMARY KEY NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE tidings_bindings (
    subscription TEXT NOT NULL REFERENCES tidings_subscriptions (name) ON DELETE CASCADE,
    pattern      TEXT NOT NULL,
    PRIMARY KEY (subscription, pattern)
) WITHOUT ROWID;

-- Bumped by every change to the bindings, so that publishers (in this process or another)
-- reload their routing table only when it changed.
CREATE TABLE tidings_meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO tidings_meta (key, value) VALUES ('bindings_version', 0);

-- A message is ready when it is not acked and visible_at has passed. Leasing it sets
-- lease_token and pushes visible_at to the lease's end, so that an expired lease (a dead
-- worker) makes it ready again with no sweeper.
CREATE TABLE tidings_messages (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription     TEXT NOT NULL,
    topic            TEXT NOT NULL,
    content_type     TEXT,
    body             BLOB NOT NULL,
    published_at     INTEGER NOT NULL,
    visible_at       INTEGER NOT NULL,
    lease_token      INTEGER,
    attempts         INTEGER NOT NULL DEFAULT 0,
    first_failure_at INTEGER,
    last_error       TEXT,
    acked_at         INTEGER
);
CREATE INDEX tidings_messages_pending ON tidings_messages (subscription, id)
    WHERE acked_at IS NULL;
CREATE INDEX tidings_messages_lease ON tidings_messages (lease_token)
    WHERE lease_token IS NOT NULL;
CREATE INDEX tidings_messages_acked ON tidings_messages (acked_at)
    WHERE acked_at IS NOT NULL;

CREATE TABLE tidings_dead_letters (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    subscription     TEXT NOT NULL,
    handler          TEXT,
    topic            TEXT NOT NULL,
    content_type     TEXT,
    body             BLOB NOT NULL,
    decodable        INTEGER NOT NULL,
    reason_kind      TEXT NOT NULL,
    reason_message   TEXT NOT NULL,
    attempts         INTEGER NOT NULL,
    first_failure_at INTEGER NOT NULL,
    last_failure_at  INTEGER NOT NULL
);
CREATE INDEX tidings_dead_letters_subscription ON tidings_dead_letters (subscription, seq);
