//! A small blocking S3 client: the calls batchd makes to S3-compatible object
//! storage (AWS, Garage, MinIO, RustFS, Ceph RGW) to deliver parts and read
//! sources — put (single or multipart, every request signed over its body's
//! SHA-256), head, list, get, and the multipart housekeeping that keeps a
//! bucket free of half uploads after a crash. A leaf: depends on nothing of
//! ours; its errors say which call on which key failed and whether trying
//! again can help.
//!
//! Why not a crate: `object_store` and `aws-sdk-s3` need an async runtime the
//! threaded daemon does not have (and add minutes to a clean build);
//! `rusty-s3` only presigns with unsigned payloads (see `sigv4`). This module
//! is ureq (HTTP, rustls) plus ~400 lines.

pub mod sigv4;
mod xml;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;

/// Where and as whom: one bucket on one endpoint.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http://host:port` or `https://host`, no path.
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    /// Path style (`endpoint/bucket/key`, what self-hosted servers want) or
    /// virtual-host style (`bucket.host/key`, what AWS prefers).
    pub path_style: bool,
    pub access_key: String,
    pub secret_key: String,
}

#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// No answer: refused, reset, timed out, TLS failed. Worth retrying.
    #[error("{call} {key}: {detail}")]
    Network { call: &'static str, key: String, detail: String },
    /// The server answered with an error status.
    #[error("{call} {key}: HTTP {status} {code}: {message}")]
    Status {
        call: &'static str,
        key: String,
        status: u16,
        code: String,
        message: String,
    },
    /// The object is there but not what was sent.
    #[error("{key}: {detail}")]
    Mismatch { key: String, detail: String },
    #[error("{path}: {action}: {source}")]
    Local {
        path: String,
        action: &'static str,
        source: std::io::Error,
    },
}

/// What a HEAD or a listing says of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub key: String,
    pub size: u64,
    /// `x-amz-meta-sha256`, as batchd sets it on every part it delivers.
    pub sha256: Option<String>,
}

pub struct Client {
    target: Target,
    scheme: String,
    host: String,
    agent: ureq::Agent,
}

type Reply = ureq::http::Response<ureq::Body>;

impl Client {
    pub fn new(target: Target) -> Result<Client, String> {
        let (scheme, host) = parse_endpoint(&target.endpoint)?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_recv_response(Some(Duration::from_secs(300)))
            .timeout_recv_body(Some(Duration::from_secs(300)))
            .timeout_per_write(Some(Duration::from_secs(60)))
            .timeout_per_read(Some(Duration::from_secs(60)))
            .build()
            .into();
        Ok(Client {
            scheme: scheme.to_owned(),
            host: host.to_owned(),
            agent,
            target,
        })
    }

    /// Host and encoded path of `key` (an empty key: the bucket).
    fn locate(&self, key: &str) -> (String, String) {
        let key = sigv4::uri_encode(key, true);
        if self.target.path_style {
            (
                self.host.clone(),
                format!("/{}/{key}", sigv4::uri_encode(&self.target.bucket, false)),
            )
        } else {
            (format!("{}.{}", self.target.bucket, self.host), format!("/{key}"))
        }
    }

    /// The object's address, as shown to people (`s3://bucket/key` is shown
    /// too, but this one can be fetched).
    pub fn url(&self, key: &str) -> String {
        let (host, path) = self.locate(key);
        format!("{}://{host}{path}", self.scheme)
    }

    /// Builds, signs and sends one request.
    #[allow(clippy::too_many_arguments)]
    fn send(
        &self,
        call: &'static str,
        method: &str,
        key: &str,
        query: &[(String, String)],
        headers: &[(String, String)],
        payload_sha256: &str,
        body: Option<ureq::SendBody>,
    ) -> Result<Reply, S3Error> {
        let (host, path) = self.locate(key);
        let signed = sigv4::sign(
            &sigv4::Request {
                method,
                host: &host,
                path: &path,
                query,
                headers,
                payload_sha256,
            },
            &self.target.access_key,
            &self.target.secret_key,
            &self.target.region,
            &amz_now(),
        );
        let qs = sigv4::canonical_query(query);
        let url = format!("{}://{host}{path}{}{qs}", self.scheme, if qs.is_empty() { "" } else { "?" });
        let mut req = ureq::http::Request::builder().method(method).uri(&url);
        for (k, v) in headers.iter().chain(&signed) {
            req = req.header(k, v);
        }
        let net = |e: ureq::Error| S3Error::Network {
            call,
            key: key.to_owned(),
            detail: e.to_string(),
        };
        let reply = match body {
            Some(b) => self.agent.run(req.body(b).map_err(|e| net(ureq::Error::Http(e)))?),
            None => self.agent.run(req.body(()).map_err(|e| net(ureq::Error::Http(e)))?),
        }
        .map_err(net)?;
        Ok(reply)
    }

    /// Turns an error status into `S3Error::Status` with the server's code.
    fn check(call: &'static str, key: &str, mut reply: Reply) -> Result<Reply, S3Error> {
        let status = reply.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(reply);
        }
        let body = reply.body_mut().with_config().limit(64 * 1024).read_to_string().unwrap_or_default();
        Err(S3Error::Status {
            call,
            key: key.to_owned(),
            status,
            code: xml::first(&body, "Code").unwrap_or_default(),
            message: xml::first(&body, "Message").unwrap_or_else(|| body.chars().take(200).collect()),
        })
    }

    fn body_text(call: &'static str, key: &str, mut reply: Reply) -> Result<String, S3Error> {
        reply
            .body_mut()
            .with_config()
            .limit(16 * 1024 * 1024)
            .read_to_string()
            .map_err(|e| S3Error::Network {
                call,
                key: key.to_owned(),
                detail: e.to_string(),
            })
    }

    /// The object under `key`, or `None` when there is none.
    pub fn head(&self, key: &str) -> Result<Option<Object>, S3Error> {
        let reply = self.send("HeadObject", "HEAD", key, &[], &[], sigv4::EMPTY_SHA256, None)?;
        if reply.status().as_u16() == 404 {
            return Ok(None);
        }
        let reply = Self::check("HeadObject", key, reply)?;
        Ok(Some(Object {
            key: key.to_owned(),
            size: header(&reply, "content-length").and_then(|v| v.parse().ok()).unwrap_or(0),
            sha256: header(&reply, "x-amz-meta-sha256"),
        }))
    }

    /// Uploads `path` (of `size` bytes and SHA-256 `sha256`, hex) to `key` in
    /// one PUT, or in parts of `part_size` when it is larger than `threshold`.
    /// Any unfinished multipart upload to the same key (a crash's leftover) is
    /// aborted first. The object carries the SHA-256 as `x-amz-meta-sha256`,
    /// and is checked with a HEAD afterwards. `after_chunk` runs after each
    /// request of a multipart upload (a test's crash point).
    #[allow(clippy::too_many_arguments)]
    pub fn upload(
        &self,
        key: &str,
        path: &Path,
        size: u64,
        sha256: &str,
        threshold: u64,
        part_size: u64,
        after_chunk: &dyn Fn(),
    ) -> Result<Object, S3Error> {
        let local = |action, source| S3Error::local(path, action, source);
        self.abort_leftovers(key)?;
        let meta = vec![
            ("content-type".to_owned(), "application/zip".to_owned()),
            ("x-amz-meta-sha256".to_owned(), sha256.to_owned()),
        ];
        if size <= threshold {
            let mut f = File::open(path).map_err(|e| local("opening", e))?;
            let mut headers = meta;
            headers.push(("content-length".to_owned(), size.to_string()));
            headers.push(("x-amz-checksum-sha256".to_owned(), b64_of_hex(sha256)));
            let reply = self.send(
                "PutObject",
                "PUT",
                key,
                &[],
                &headers,
                sha256,
                Some(ureq::SendBody::from_reader(&mut f)),
            )?;
            Self::check("PutObject", key, reply)?;
        } else {
            self.multipart(key, path, size, part_size.max(5 << 20), &meta, after_chunk)?;
        }
        let got = self.head(key)?.ok_or_else(|| S3Error::Mismatch {
            key: key.to_owned(),
            detail: "the object is not there after its upload".into(),
        })?;
        if got.size != size || got.sha256.as_deref() != Some(sha256) {
            return Err(S3Error::Mismatch {
                key: key.to_owned(),
                detail: format!(
                    "after the upload the object has {} bytes and sha256 {:?}, not {size} and {sha256}",
                    got.size, got.sha256
                ),
            });
        }
        Ok(got)
    }

    fn multipart(
        &self,
        key: &str,
        path: &Path,
        size: u64,
        part_size: u64,
        meta: &[(String, String)],
        after_chunk: &dyn Fn(),
    ) -> Result<(), S3Error> {
        let local = |action, source| S3Error::local(path, action, source);
        let q =
            |pairs: &[(&str, &str)]| -> Vec<(String, String)> { pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect() };
        let reply = self.send(
            "CreateMultipartUpload",
            "POST",
            key,
            &q(&[("uploads", "")]),
            meta,
            sigv4::EMPTY_SHA256,
            None,
        )?;
        let text = Self::body_text("CreateMultipartUpload", key, Self::check("CreateMultipartUpload", key, reply)?)?;
        let upload_id = xml::first(&text, "UploadId").ok_or_else(|| S3Error::Mismatch {
            key: key.to_owned(),
            detail: format!(
                "CreateMultipartUpload answered without an UploadId: {}",
                text.chars().take(200).collect::<String>()
            ),
        })?;
        let result = (|| {
            let mut f = File::open(path).map_err(|e| local("opening", e))?;
            let mut buf = vec![0u8; part_size as usize];
            let mut etags = Vec::new();
            let mut offset = 0u64;
            let mut n = 1u32;
            while offset < size {
                let len = part_size.min(size - offset) as usize;
                f.seek(SeekFrom::Start(offset)).map_err(|e| local("seeking", e))?;
                f.read_exact(&mut buf[..len]).map_err(|e| local("reading", e))?;
                let chunk = &buf[..len];
                let hash = sigv4::sha256_hex(chunk);
                let query = q(&[("partNumber", &n.to_string()), ("uploadId", &upload_id)]);
                let headers = vec![("content-length".to_owned(), len.to_string())];
                let reply = self.send(
                    "UploadPart",
                    "PUT",
                    key,
                    &query,
                    &headers,
                    &hash,
                    Some(ureq::SendBody::from_reader(&mut &*chunk)),
                )?;
                let reply = Self::check("UploadPart", key, reply)?;
                etags.push((n, header(&reply, "etag").unwrap_or_default()));
                after_chunk();
                offset += len as u64;
                n += 1;
            }
            let mut body = String::from("<CompleteMultipartUpload>");
            for (n, etag) in &etags {
                body.push_str(&format!(
                    "<Part><PartNumber>{n}</PartNumber><ETag>{}</ETag></Part>",
                    xml::escape(etag)
                ));
            }
            body.push_str("</CompleteMultipartUpload>");
            let hash = sigv4::sha256_hex(body.as_bytes());
            let headers = vec![("content-length".to_owned(), body.len().to_string())];
            let reply = self.send(
                "CompleteMultipartUpload",
                "POST",
                key,
                &q(&[("uploadId", &upload_id)]),
                &headers,
                &hash,
                Some(ureq::SendBody::from_reader(&mut body.as_bytes())),
            )?;
            // A 200 may still carry an error in its body.
            let text = Self::body_text("CompleteMultipartUpload", key, Self::check("CompleteMultipartUpload", key, reply)?)?;
            if text.contains("<Error>") {
                return Err(S3Error::Status {
                    call: "CompleteMultipartUpload",
                    key: key.to_owned(),
                    status: 200,
                    code: xml::first(&text, "Code").unwrap_or_default(),
                    message: xml::first(&text, "Message").unwrap_or_default(),
                });
            }
            Ok(())
        })();
        if result.is_err() {
            // Best effort: the next attempt aborts leftovers anyway.
            let _ = self.abort(key, &upload_id);
        }
        result
    }

    fn abort(&self, key: &str, upload_id: &str) -> Result<(), S3Error> {
        let query = vec![("uploadId".to_owned(), upload_id.to_owned())];
        let reply = self.send("AbortMultipartUpload", "DELETE", key, &query, &[], sigv4::EMPTY_SHA256, None)?;
        if reply.status().as_u16() == 404 {
            return Ok(());
        }
        Self::check("AbortMultipartUpload", key, reply).map(drop)
    }

    /// Aborts every unfinished multipart upload to exactly `key`.
    fn abort_leftovers(&self, key: &str) -> Result<usize, S3Error> {
        let mut n = 0;
        for (k, id) in self.multipart_uploads(key)? {
            if k == key {
                self.abort(key, &id)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Unfinished multipart uploads under `prefix`: (key, upload id).
    fn multipart_uploads(&self, prefix: &str) -> Result<Vec<(String, String)>, S3Error> {
        let query = vec![("uploads".to_owned(), String::new()), ("prefix".to_owned(), prefix.to_owned())];
        let reply = self.send("ListMultipartUploads", "GET", "", &query, &[], sigv4::EMPTY_SHA256, None)?;
        let text = Self::body_text("ListMultipartUploads", prefix, Self::check("ListMultipartUploads", prefix, reply)?)?;
        Ok(xml::blocks(&text, "Upload")
            .iter()
            .filter_map(|u| Some((xml::first(u, "Key")?, xml::first(u, "UploadId")?)))
            .collect())
    }

    /// Every object under `prefix`, in key order.
    pub fn list(&self, prefix: &str) -> Result<Vec<Object>, S3Error> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![("list-type".to_owned(), "2".to_owned()), ("prefix".to_owned(), prefix.to_owned())];
            if let Some(t) = &token {
                query.push(("continuation-token".to_owned(), t.clone()));
            }
            let reply = self.send("ListObjectsV2", "GET", "", &query, &[], sigv4::EMPTY_SHA256, None)?;
            let text = Self::body_text("ListObjectsV2", prefix, Self::check("ListObjectsV2", prefix, reply)?)?;
            for c in xml::blocks(&text, "Contents") {
                if let Some(key) = xml::first(&c, "Key") {
                    out.push(Object {
                        key,
                        size: xml::first(&c, "Size").and_then(|s| s.parse().ok()).unwrap_or(0),
                        sha256: None,
                    });
                }
            }
            token = xml::first(&text, "NextContinuationToken");
            if xml::first(&text, "IsTruncated").as_deref() != Some("true") || token.is_none() {
                break;
            }
        }
        Ok(out)
    }

    /// Downloads `key` into `dest` (written in place; the caller renames).
    /// Returns the bytes written.
    pub fn download(&self, key: &str, dest: &Path) -> Result<u64, S3Error> {
        let local = |action, source| S3Error::local(dest, action, source);
        let reply = self.send("GetObject", "GET", key, &[], &[], sigv4::EMPTY_SHA256, None)?;
        let reply = Self::check("GetObject", key, reply)?;
        let expected: Option<u64> = header(&reply, "content-length").and_then(|v| v.parse().ok());
        let mut out = File::create(dest).map_err(|e| local("creating", e))?;
        let mut body = reply.into_body();
        let mut reader = body.with_config().limit(u64::MAX).reader();
        let mut buf = vec![0u8; 1 << 20];
        let mut written = 0u64;
        loop {
            let n = reader.read(&mut buf).map_err(|e| S3Error::Network {
                call: "GetObject",
                key: key.to_owned(),
                detail: e.to_string(),
            })?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n]).map_err(|e| local("writing", e))?;
            written += n as u64;
        }
        out.sync_all().map_err(|e| local("syncing", e))?;
        if expected.is_some_and(|e| e != written) {
            return Err(S3Error::Network {
                call: "GetObject",
                key: key.to_owned(),
                detail: format!("the body ended after {written} of {} bytes", expected.unwrap_or(0)),
            });
        }
        Ok(written)
    }
}

impl S3Error {
    fn local(path: &Path, action: &'static str, source: std::io::Error) -> S3Error {
        S3Error::Local {
            path: path.display().to_string(),
            action,
            source,
        }
    }

    /// True when another attempt may succeed (network trouble, throttling,
    /// server errors); false for refusals that need a person (403, 404 bucket).
    pub fn transient(&self) -> bool {
        match self {
            S3Error::Network { .. } | S3Error::Mismatch { .. } => true,
            S3Error::Status { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            S3Error::Local { .. } => false,
        }
    }
}

/// `(scheme, host[:port])` of an endpoint `http(s)://host[:port]`.
pub fn parse_endpoint(endpoint: &str) -> Result<(&str, &str), String> {
    endpoint
        .trim_end_matches('/')
        .split_once("://")
        .filter(|(s, h)| matches!(*s, "http" | "https") && !h.is_empty() && !h.contains('/'))
        .ok_or_else(|| format!("endpoint {endpoint:?} is not http(s)://host[:port]"))
}

/// A response header as text.
fn header(reply: &Reply, name: &str) -> Option<String> {
    reply.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// Now, as `x-amz-date` wants it (chrono here has no clock of its own).
fn amz_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .format("%Y%m%dT%H%M%SZ")
        .to_string()
}

/// The base64 form of a hex SHA-256, as `x-amz-checksum-sha256` wants.
fn b64_of_hex(hex: &str) -> String {
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
        .collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
