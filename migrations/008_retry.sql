-- Version 8: retries and where a watched file went.
-- jobs.retries counts the times a FAILED or CANCELLED job was run again as
-- itself; jobs.retry_of links a job made by a retry with "new_job" back to the
-- job it retries.
ALTER TABLE jobs ADD COLUMN retries INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN retry_of TEXT;
-- Where a watched file went when its job ended: done, failed, deleted or kept
-- (a skipped duplicate: duplicates), and its path there.
ALTER TABLE watch_files ADD COLUMN disposition TEXT;
ALTER TABLE watch_files ADD COLUMN final_path TEXT;
-- A client's own words and id for a campaign, as for a job.
ALTER TABLE campaigns ADD COLUMN name TEXT;
ALTER TABLE campaigns ADD COLUMN description TEXT;
ALTER TABLE campaigns ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
ALTER TABLE campaigns ADD COLUMN external_ref TEXT;
-- The dashboard's per-minute chart reads parts finished in the last hour.
CREATE INDEX parts_done_at ON parts(finished) WHERE state = 'DONE';
