-- Version 3: cron schedules. `schedules.cursor` is the last scheduled time
-- handled; the next fire is computed from it, never from the clock. A fire row
-- is unique on (schedule, scheduled_at, manual), so a fire time cannot run twice.
-- `schedule_files` remembers what each schedule ingested, by identity.
CREATE TABLE schedules (
    name    TEXT PRIMARY KEY,
    cursor  REAL NOT NULL,
    missed  INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);

CREATE TABLE schedule_fires (
    id           INTEGER PRIMARY KEY,
    schedule     TEXT NOT NULL,
    scheduled_at REAL NOT NULL,
    manual       INTEGER NOT NULL DEFAULT 0,
    fired_at     REAL NOT NULL,
    late         INTEGER NOT NULL DEFAULT 0,   -- a catch-up after downtime
    result       TEXT NOT NULL,                -- QUEUED EMPTY ERROR
    files        INTEGER NOT NULL DEFAULT 0,
    job_id       TEXT REFERENCES jobs(id),
    error        TEXT,
    UNIQUE (schedule, scheduled_at, manual)
);
CREATE INDEX schedule_fires_recent ON schedule_fires(schedule, fired_at);

CREATE TABLE schedule_files (
    schedule TEXT NOT NULL,
    path     TEXT NOT NULL,
    size     INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    inode    INTEGER NOT NULL,
    job_id   TEXT NOT NULL REFERENCES jobs(id),
    PRIMARY KEY (schedule, path, size, mtime_ns, inode)
);
