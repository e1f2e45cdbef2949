-- Version 7: a fair queue. jobs.running counts a job's PLAN, PACK and FINISH
-- tasks running now (kept by triggers), so claiming can serve the job that runs
-- least first; jobs.max_concurrency is a job's own cap on it. The queue table
-- holds the one pause switch.
ALTER TABLE jobs ADD COLUMN running INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN max_concurrency INTEGER;
-- A job cancelled with its published parts still delivered (hooks.on_cancel).
ALTER TABLE jobs ADD COLUMN deliver_after_cancel INTEGER NOT NULL DEFAULT 0;
-- A client's own words and id for a job.
ALTER TABLE jobs ADD COLUMN name TEXT;
ALTER TABLE jobs ADD COLUMN description TEXT;
ALTER TABLE jobs ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
ALTER TABLE jobs ADD COLUMN external_ref TEXT;
UPDATE jobs SET running = (SELECT COUNT(*) FROM tasks t WHERE t.job_id = jobs.id AND t.state = 'RUNNING' AND t.kind != 'HOOK');
CREATE TRIGGER tasks_running_start AFTER UPDATE OF state ON tasks
    WHEN NEW.state = 'RUNNING' AND OLD.state != 'RUNNING' AND NEW.kind != 'HOOK' BEGIN
    UPDATE jobs SET running = running + 1 WHERE id = NEW.job_id;
END;
CREATE TRIGGER tasks_running_end AFTER UPDATE OF state ON tasks
    WHEN OLD.state = 'RUNNING' AND NEW.state != 'RUNNING' AND OLD.kind != 'HOOK' BEGIN
    UPDATE jobs SET running = running - 1 WHERE id = OLD.job_id;
END;
CREATE TRIGGER tasks_running_delete AFTER DELETE ON tasks
    WHEN OLD.state = 'RUNNING' AND OLD.kind != 'HOOK' BEGIN
    UPDATE jobs SET running = running - 1 WHERE id = OLD.job_id;
END;
CREATE INDEX jobs_external_ref ON jobs(external_ref) WHERE external_ref IS NOT NULL;
CREATE INDEX tasks_ready_hooks ON tasks(id) WHERE state = 'READY' AND kind = 'HOOK';
CREATE INDEX jobs_busy ON jobs(priority DESC, running, seq) WHERE running > 0 AND status IN ('QUEUED', 'PROCESSING');
-- A campaign's priority, given to its batches and their child jobs.
ALTER TABLE campaigns ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
CREATE TABLE queue (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    paused    INTEGER NOT NULL DEFAULT 0,
    since     REAL,
    reason    TEXT
);
INSERT INTO queue (id, paused) VALUES (1, 0);
