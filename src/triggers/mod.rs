//! Triggers: where jobs come from without anyone typing. `watch` turns files
//! dropped into inbox directories into jobs, exactly once each; `schedule`
//! sweeps directories at cron times for files it has not ingested yet.

pub mod cron;
pub mod hint;
pub mod schedule;
pub mod watch;
