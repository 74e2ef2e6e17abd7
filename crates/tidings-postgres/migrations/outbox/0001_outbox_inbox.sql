-- The transactional outbox and the inbox.

-- A staged event waits for a relay until it is published (then its row is deleted).
-- ordering_key (the subject unless the stager says otherwise) is what relays keep in order;
-- a lease reserves a run of one key's oldest events for one relay.
CREATE TABLE tidings_outbox (
    position     BIGSERIAL PRIMARY KEY,
    ordering_key TEXT,
    topic        TEXT NOT NULL,
    body         BYTEA NOT NULL,
    staged_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    leased_until TIMESTAMPTZ,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    sent_at      TIMESTAMPTZ
);
CREATE INDEX tidings_outbox_unsent ON tidings_outbox (ordering_key, position)
    WHERE sent_at IS NULL;

-- Handled events per subscription: (subscription, source, id) is an event's identity.
CREATE TABLE tidings_inbox (
    subscription TEXT NOT NULL,
    source       TEXT NOT NULL,
    id           TEXT NOT NULL,
    handled_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (subscription, source, id)
);
CREATE INDEX tidings_inbox_handled ON tidings_inbox (handled_at);
