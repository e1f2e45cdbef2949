-- batchd's whole SQLite schema, applied in one transaction at start; the version
-- lives in PRAGMA user_version (1 here) and migrations/NNN_*.sql move it forward,
-- in order, each in the same start-up transaction.
-- Times are Unix seconds (REAL). Settings and errors are JSON text.

CREATE TABLE jobs (
    id              TEXT PRIMARY KEY,
    seq             INTEGER NOT NULL UNIQUE,          -- FIFO order and list cursor
    kind            TEXT NOT NULL DEFAULT 'ingest',   -- ingest | parent
    status          TEXT NOT NULL,                    -- DRAFT QUEUED PROCESSING COMPLETED FAILED CANCELLED
    trigger         TEXT NOT NULL,                    -- api | cli | watch | schedule
    priority        INTEGER NOT NULL DEFAULT 0,
    settings        TEXT NOT NULL,
    out_dir         TEXT NOT NULL,
    created         REAL NOT NULL,
    modified        REAL NOT NULL,
    started         REAL,
    finished        REAL,
    error           TEXT,                             -- {code, message, entry, line}
    total_rows      INTEGER NOT NULL DEFAULT 0,
    processed_rows  INTEGER NOT NULL DEFAULT 0,
    skipped_rows    INTEGER NOT NULL DEFAULT 0,
    error_events    INTEGER NOT NULL DEFAULT 0,       -- events worth listing under "errors"
    last_progress   REAL,                             -- when rows last moved (stall detection)
    campaign_id     TEXT,
    parent_job_id   TEXT REFERENCES jobs(id),
    start_position  INTEGER,
    next_start_position INTEGER
);
CREATE INDEX jobs_status ON jobs(status, seq);

CREATE TABLE sources (
    job_id  TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    n       INTEGER NOT NULL,
    path    TEXT NOT NULL,
    PRIMARY KEY (job_id, n)
);

CREATE TABLE tasks (
    id          INTEGER PRIMARY KEY,
    job_id      TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,                        -- PLAN PACK FINISH
    source_n    INTEGER,
    part_n      INTEGER,                              -- NULL for a PACK of a whole streamed source
    state       TEXT NOT NULL,                        -- WAITING READY RUNNING DONE FAILED CANCELLED
    attempts    INTEGER NOT NULL DEFAULT 0,
    not_before  REAL NOT NULL DEFAULT 0,
    error       TEXT,
    created     REAL NOT NULL,
    started     REAL,
    finished    REAL
);
CREATE INDEX tasks_ready ON tasks(state, not_before);
CREATE INDEX tasks_job ON tasks(job_id, kind, state);

CREATE TABLE parts (
    job_id        TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    source_n      INTEGER NOT NULL,
    n             INTEGER NOT NULL,
    path          TEXT NOT NULL,
    rows          INTEGER NOT NULL,
    first_line    INTEGER NOT NULL,
    last_line     INTEGER NOT NULL,
    files         INTEGER NOT NULL,
    payload_bytes INTEGER NOT NULL,
    comment       TEXT NOT NULL,                      -- the plan fingerprint written into the ZIP
    state         TEXT NOT NULL,                      -- PENDING DONE
    bytes         INTEGER,
    sha256        TEXT,
    finished      REAL,
    PRIMARY KEY (job_id, source_n, n)
);
CREATE INDEX parts_finished ON parts(job_id, finished);

CREATE TABLE events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id  TEXT,
    at      REAL NOT NULL,
    kind    TEXT NOT NULL,
    data    TEXT NOT NULL
);
CREATE INDEX events_job ON events(job_id, id);

CREATE TABLE idempotency (
    key        TEXT PRIMARY KEY,
    body_hash  TEXT NOT NULL,
    job_id     TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    created    REAL NOT NULL
);
