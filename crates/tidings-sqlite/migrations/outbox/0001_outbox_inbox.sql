-- The transactional outbox and the inbox. Times are Unix milliseconds.

-- A staged event waits for a relay until sent_at is set. ordering_key (the subject unless the
-- stager says otherwise) is what relays keep in order; a lease reserves a run of one key's
-- oldest events for one relay.
CREATE TABLE tidings_outbox (
    position     INTEGER PRIMARY KEY AUTOINCREMENT,
    ordering_key TEXT,
    topic        TEXT NOT NULL,
    body         BLOB NOT NULL,
    staged_at    INTEGER NOT NULL,
    leased_until INTEGER,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    sent_at      INTEGER
);
CREATE INDEX tidings_outbox_unsent ON tidings_outbox (ordering_key, position)
    WHERE sent_at IS NULL;
CREATE INDEX tidings_outbox_sent ON tidings_outbox (sent_at)
    WHERE sent_at IS NOT NULL;

-- Handled events per subscription: (subscription, source, id) is an event's identity.
CREATE TABLE tidings_inbox (
    subscription TEXT NOT NULL,
    source       TEXT NOT NULL,
    id           TEXT NOT NULL,
    handled_at   INTEGER NOT NULL,
    PRIMARY KEY (subscription, source, id)
) WITHOUT ROWID;
CREATE INDEX tidings_inbox_handled ON tidings_inbox (handled_at);
