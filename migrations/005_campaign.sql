-- Version 5: campaigns. A campaign is a sequence of `parent` jobs over one
-- parent collection (a directory; its children are the matching entries sorted
-- by name bytes, positions 1-based). Each parent job covers
-- [start_position, start_position + batch_size) and records, per position, the
-- child job it queued or that the child was skipped (already ingested).
CREATE TABLE campaigns (
    id              TEXT PRIMARY KEY,
    parent          TEXT NOT NULL,
    pattern         TEXT NOT NULL,
    batch_size      INTEGER NOT NULL,
    total_children  INTEGER,                  -- cap on positions, NULL for none
    max_failed      INTEGER,                  -- failed children that stop it, NULL for never
    settings        TEXT NOT NULL,            -- child job settings
    managed         INTEGER NOT NULL,         -- 1: the daemon queues the batches; 0: an outside runner does
    status          TEXT NOT NULL,            -- RUNNING STOPPING STOPPED COMPLETED FAILED
    known_children  INTEGER,                  -- children in the collection (up to the cap) at the last listing
    error           TEXT,
    created         REAL NOT NULL,
    modified        REAL NOT NULL,
    finished        REAL
);

CREATE TABLE campaign_children (
    campaign_id   TEXT NOT NULL REFERENCES campaigns(id),
    parent_job_id TEXT NOT NULL REFERENCES jobs(id),
    position      INTEGER NOT NULL,
    path          TEXT NOT NULL,
    size          INTEGER NOT NULL,
    mtime_ns      INTEGER NOT NULL,
    job_id        TEXT REFERENCES jobs(id),   -- NULL when skipped
    skipped_for   TEXT,                       -- the earlier job that ingested the same child
    PRIMARY KEY (parent_job_id, position)
);
CREATE INDEX campaign_children_identity ON campaign_children(path, size, mtime_ns);
CREATE INDEX campaign_children_campaign ON campaign_children(campaign_id);
CREATE INDEX jobs_campaign ON jobs(campaign_id, kind, status);
-- One live parent job per position of a campaign: a batch is never queued twice.
CREATE UNIQUE INDEX jobs_campaign_batch ON jobs(campaign_id, start_position) WHERE kind = 'parent' AND status != 'FAILED';
