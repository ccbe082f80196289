-- The dispatcher's writes, made cheaper (each delivery is claimed, then recorded):
-- - Attempts are found by their delivery's rowid instead of its random text id, so the
--   index grows at its end (deliveries are attempted roughly in creation order) and a
--   commit recording many attempts rewrites one or two of its pages instead of one per
--   attempt; the foreign key is checked by rowid too. The table loses AUTOINCREMENT
--   (an extra read and write of `sqlite_sequence` per attempt): a new attempt still gets a
--   rowid above every existing one, so each delivery's attempts stay in order.
-- - Only pending deliveries are indexed by due time: a success leaves the index instead
--   of moving within it, and the index stays the size of the queue. Failed ones have an
--   index of their own, for recovery and for counting.

CREATE TABLE webhooks_attempts_v5 (
    seq INTEGER PRIMARY KEY,
    delivery_id TEXT NOT NULL,
    delivery_seq INTEGER NOT NULL REFERENCES webhooks_deliveries(seq),
    attempted_at INTEGER NOT NULL,
    status INTEGER,
    latency_ms INTEGER NOT NULL,
    response_body TEXT,
    error TEXT
);
INSERT INTO webhooks_attempts_v5
    (seq, delivery_id, delivery_seq, attempted_at, status, latency_ms, response_body, error)
    SELECT a.seq, a.delivery_id, d.seq, a.attempted_at, a.status, a.latency_ms,
           a.response_body, a.error
    FROM webhooks_attempts a JOIN webhooks_deliveries d ON d.id = a.delivery_id;
DROP TABLE webhooks_attempts;
ALTER TABLE webhooks_attempts_v5 RENAME TO webhooks_attempts;
CREATE INDEX webhooks_attempts_by_delivery ON webhooks_attempts(delivery_seq, seq);
ALTER TABLE webhooks_deliveries ADD COLUMN message_seq INTEGER;
UPDATE webhooks_deliveries SET message_seq =
    (SELECT m.seq FROM webhooks_messages m WHERE m.id = webhooks_deliveries.message_id);
DROP INDEX webhooks_deliveries_due;
CREATE INDEX webhooks_deliveries_pending ON webhooks_deliveries(next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhooks_deliveries_failed ON webhooks_deliveries(endpoint_id, created_at)
    WHERE status = 'failed';
