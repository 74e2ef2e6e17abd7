-- A claim, planned the same way whatever the table's statistics say.
--
-- A queue table is mostly empty, so its statistics (where anything gathers them) say it holds
-- a handful of rows. Planned on those, `ORDER BY id LIMIT n` reads every ready row of the
-- subscription through a bitmap scan and sorts them all, on every claim: a backlog is then
-- drained in quadratic time (with 20,000 ready rows, `tidings bench` end-to-end fell from
-- 24,000 to 1,600 events a second). Planned without sorts, the only way left is the
-- (subscription, id) index, walked in order and left after `n` ready rows.
--
-- $1 the lease token, $2 the lease in seconds, $3 the subscription, $4 how many at most.
CREATE FUNCTION tidings_claim(BIGINT, DOUBLE PRECISION, TEXT, BIGINT)
RETURNS TABLE (
    id               BIGINT,
    topic            TEXT,
    content_type     TEXT,
    body             BYTEA,
    attempts         INTEGER,
    first_failure_at TIMESTAMPTZ,
    last_error       TEXT
)
LANGUAGE sql
SET enable_sort = off
AS $$
UPDATE tidings_messages m
SET lease_token = $1, visible_at = now() + make_interval(secs => $2), attempts = m.attempts + 1
FROM (SELECT q.id FROM tidings_messages q
      WHERE q.subscription = $3 AND q.visible_at <= now()
      ORDER BY q.id LIMIT $4 FOR UPDATE SKIP LOCKED) ready
WHERE m.id = ready.id
RETURNING m.id, m.topic, m.content_type, m.body, m.attempts, m.first_failure_at, m.last_error
$$;
