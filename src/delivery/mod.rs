//! What leaves the machine: parts delivered to S3-compatible object storage
//! (`s3`, run by the engine's HOOK tasks, so deliveries share their retries,
//! crash recovery and the `hooks.workers` pool), and signed webhooks
//! (`webhooks`, a dispatcher thread over a durable outbox in SQLite, signed
//! per the Standard Webhooks scheme in `sign`). The site's command hooks stay
//! in `crate::hooks`.

pub mod s3;
pub mod sign;
pub mod webhooks;
