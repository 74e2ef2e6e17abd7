-- Consumers that find nothing ready ask when the next message of their subscription becomes
-- visible (a delayed retry, a lease running out); this index answers without a scan.
CREATE INDEX tidings_messages_visible ON tidings_messages (subscription, visible_at)
    WHERE acked_at IS NULL;

-- Space set aside for consumers. When the disk (or max_size) is full, publishes are refused
-- and this row is deleted, so that claims and acks, which need a few pages of their own, can
-- still drain the store; it is set aside again once draining has made room.
CREATE TABLE tidings_reserve (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    space BLOB NOT NULL
);
