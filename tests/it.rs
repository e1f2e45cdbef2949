//! The integration suite: one binary, real processes, real archives on disk, parts
//! checked with independent readers (Python's zipfile, Info-ZIP's unzip).

mod helper;

#[path = "it/architecture.rs"]
mod architecture;

#[path = "it/split_formats.rs"]
mod split_formats;

#[path = "it/split_bad_input.rs"]
mod split_bad_input;

#[path = "it/split_resume.rs"]
mod split_resume;

#[path = "it/daemon_api.rs"]
mod daemon_api;

#[path = "it/daemon_crash.rs"]
mod daemon_crash;

#[path = "it/isolation.rs"]
mod isolation;

#[path = "it/history.rs"]
mod history;

#[path = "it/retry.rs"]
mod retry;

#[path = "it/fetch.rs"]
mod fetch;

#[path = "it/delivery.rs"]
mod delivery;

#[path = "it/webhooks.rs"]
mod webhooks;

#[path = "it/queue.rs"]
mod queue;

#[path = "it/config.rs"]
mod config;

#[path = "it/openapi.rs"]
mod openapi;

#[path = "it/watch.rs"]
mod watch;

#[path = "it/store.rs"]
mod store;

#[path = "it/schedule.rs"]
mod schedule;

#[path = "it/campaign.rs"]
mod campaign;

#[path = "it/systemd.rs"]
mod systemd;

#[path = "it/packaging.rs"]
mod packaging;

#[path = "it/hooks.rs"]
mod hooks;

#[path = "it/retention.rs"]
mod retention;

#[path = "it/ui.rs"]
mod ui;

#[path = "it/api_abuse.rs"]
mod api_abuse;
#[path = "it/lifecycle.rs"]
mod lifecycle;

#[path = "it/compat.rs"]
mod compat;
