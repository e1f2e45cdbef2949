-- Version 6: retention. Pruning a finished job must not forget which files were
-- ingested, or a schedule would take them again: schedule_files.job_id becomes
-- nullable (NULL: ingested by a job that completed and was pruned), as
-- watch_files.job_id and schedule_fires.job_id already are.
CREATE TABLE schedule_files_new (
    schedule TEXT NOT NULL,
    path     TEXT NOT NULL,
    size     INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    inode    INTEGER NOT NULL,
    job_id   TEXT REFERENCES jobs(id),
    PRIMARY KEY (schedule, path, size, mtime_ns, inode)
);
INSERT INTO schedule_files_new SELECT schedule, path, size, mtime_ns, inode, job_id FROM schedule_files;
DROP TABLE schedule_files;
ALTER TABLE schedule_files_new RENAME TO schedule_files;
CREATE INDEX schedule_files_job ON schedule_files(job_id);
CREATE INDEX watch_files_job ON watch_files(job_id);
CREATE INDEX schedule_fires_job ON schedule_fires(job_id);
-- The prune scan: finished jobs, oldest first.
CREATE INDEX jobs_finished ON jobs(finished) WHERE finished IS NOT NULL;
