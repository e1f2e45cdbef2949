-- Version 2: arrivals in watched inboxes. A row is written before the file is
-- moved out of the inbox (CLAIMING), and becomes QUEUED in the transaction that
-- creates its job, so a crash between the steps is resolved at startup.
CREATE TABLE watch_files (
    id              INTEGER PRIMARY KEY,
    watch           TEXT NOT NULL,
    name            TEXT NOT NULL,
    size            INTEGER NOT NULL,
    inode           INTEGER NOT NULL,
    state           TEXT NOT NULL,          -- CLAIMING QUEUED DONE
    processing_path TEXT NOT NULL,
    job_id          TEXT REFERENCES jobs(id),
    detected        REAL NOT NULL,
    finished        REAL,
    outcome         TEXT
);
CREATE INDEX watch_files_state ON watch_files(state);
