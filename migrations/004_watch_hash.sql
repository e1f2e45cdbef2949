-- Version 4: the content hash (SHA-256) of each file taken from an inbox, so the
-- same content dropped again is recognised (watch.duplicates says what happens).
ALTER TABLE watch_files ADD COLUMN sha256 TEXT;
CREATE INDEX watch_files_hash ON watch_files(watch, sha256);
