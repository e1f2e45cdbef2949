//! Delivering one part to `[delivery.s3]`: the object key from the template,
//! an upload that is idempotent (an object already holding the same bytes, by
//! size and the SHA-256 batchd stores in its metadata, is not sent again; a
//! crash's half multipart upload to the key is aborted first), a HEAD to
//! check what arrived, and the part recorded DELIVERED with its URL. (With
//! `keep_local = false` the HOOK task removes the local file after `on_part`.)

use std::path::Path;

use crate::config::{Config, DeliveryS3, KEY_FIELDS};
use crate::error::Error;
use crate::store::delivery::{self, Delivered};
use crate::store::jobs::JobRow;
use crate::store::views::PartView;
use crate::store::Store;

/// The object key of `part` of `job`.
pub fn key(d: &DeliveryS3, job: &JobRow, part: &PartView) -> Result<String, Error> {
    let file = Path::new(&part.path)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = file
        .strip_suffix(&format!("-part{}.zip", part.n))
        .unwrap_or(file.trim_end_matches(".zip"))
        .to_owned();
    crate::text::fill(&d.key, &KEY_FIELDS, |f| match f {
        "job" => job.id.clone(),
        "file" => file.clone(),
        "stem" => stem.clone(),
        "n" => part.n.to_string(),
        "source" => part.source.to_string(),
        "name" => job.about.name.clone().unwrap_or_else(|| job.id.clone()),
        _ => job.about.external_ref.clone().unwrap_or_else(|| job.id.clone()),
    })
    .map_err(|e| Error::Delivery {
        message: format!("delivery.s3.key: {e}"),
    })
}

/// Uploads one published part unless it is recorded delivered already.
pub fn deliver(store: &Store, config: &Config, job: &JobRow, part: &PartView) -> Result<(), Error> {
    let Some(d) = &config.delivery.s3 else { return Ok(()) };
    if part.delivery.as_deref() == Some("DELIVERED") {
        return Ok(());
    }
    let (source_n, n) = (part.source, part.n);
    let (Some(bytes), Some(sha256)) = (part.bytes, part.sha256.clone()) else {
        return Err(Error::Delivery {
            message: format!("part {} of job {} is not written yet", part.n, job.id),
        });
    };
    let key = key(d, job, part)?;
    let client = config
        .s3
        .client(&d.bucket)
        .map_err(|e| Error::Delivery { message: format!("{e:#}") })?;
    let fail = |e: crate::s3::S3Error| Error::Delivery {
        message: format!(
            "s3://{}/{key}: {e}{}",
            d.bucket,
            if e.transient() {
                ""
            } else {
                " (a refusal: check the bucket, the key template and the credentials)"
            }
        ),
    };
    // The same bytes there already (a crash after the upload, before it was
    // recorded): nothing to send.
    let existing = client.head(&key).map_err(fail)?;
    let already_there = existing
        .as_ref()
        .is_some_and(|o| o.size == bytes as u64 && o.sha256.as_deref() == Some(sha256.as_str()));
    if !already_there {
        crate::failpoint::hit("delivery.upload");
        client
            .upload(
                &key,
                Path::new(&part.path),
                bytes as u64,
                &sha256,
                d.multipart_threshold_mib << 20,
                d.part_size_mib << 20,
                &|| crate::failpoint::hit("delivery.chunk"),
            )
            .map_err(fail)?;
    }
    let url = client.url(&key);
    let (job_id, bucket, k) = (job.id.clone(), d.bucket.clone(), key.clone());
    store
        .write(move |tx| {
            delivery::part_delivered(
                tx,
                &Delivered {
                    job_id: &job_id,
                    source_n,
                    n,
                    bucket: &bucket,
                    key: &k,
                    url: &url,
                    already_there,
                },
            )
        })
        .map_err(|e| Error::Delivery {
            message: format!("recording the delivery: {e}"),
        })?;
    Ok(())
}
