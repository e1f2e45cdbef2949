//! Triggers: where jobs come from without anyone typing. `watch` turns files
//! dropped into inbox directories into jobs, exactly once each.

pub mod watch;
