-- Version 9: parts delivered to object storage, and webhooks.
-- A part's delivery: NULL until it is delivered (or when nothing delivers
-- parts), then DELIVERED with the object's address and when.
ALTER TABLE parts ADD COLUMN delivery TEXT;
ALTER TABLE parts ADD COLUMN object_url TEXT;
ALTER TABLE parts ADD COLUMN delivered REAL;
-- The webhook outbox: one row per event and receiver, written from the event
-- feed (below the cursor, every event has its rows), delivered at least once,
-- each attempt kept.
CREATE TABLE webhook_deliveries (
    id          INTEGER PRIMARY KEY,
    endpoint    TEXT NOT NULL,              -- the [[webhook]] name, or "callback"
    url         TEXT NOT NULL,
    event_id    INTEGER NOT NULL,
    event_type  TEXT NOT NULL,
    job_id      TEXT,
    msg_id      TEXT NOT NULL,              -- webhook-id: the same on every attempt
    payload     TEXT NOT NULL,
    state       TEXT NOT NULL,              -- PENDING DELIVERED FAILED
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     REAL NOT NULL,
    created     REAL NOT NULL,
    finished    REAL,
    last_status INTEGER,
    last_error  TEXT,
    UNIQUE (endpoint, url, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(state, next_at);
CREATE INDEX webhook_deliveries_job ON webhook_deliveries(job_id);
CREATE TABLE webhook_attempts (
    delivery_id INTEGER NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
    n           INTEGER NOT NULL,
    at          REAL NOT NULL,
    status      INTEGER,                    -- the receiver's HTTP status, NULL when none came
    error       TEXT,
    ms          REAL NOT NULL,
    PRIMARY KEY (delivery_id, n)
);
-- The last event turned into outbox rows. It starts at the newest event, so a
-- subscription added later hears of what happens from then on.
CREATE TABLE webhook_cursor (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    event_id INTEGER NOT NULL
);
INSERT INTO webhook_cursor (id, event_id) SELECT 1, COALESCE(MAX(id), 0) FROM events;
