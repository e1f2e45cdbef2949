//! `GET` and `HEAD /v1/jobs/{id}/parts/{part}/content`: a finished part's ZIP,
//! streamed from disk (never read into memory), with `Content-Length`, an
//! `ETag` that is its SHA-256, and single `Range` requests (RFC 9110:
//! `bytes=A-B`, `A-`, `-N`; `If-Range` and `If-None-Match` on the ETag), so a
//! remote client can fetch parts and resume a broken download. `{part}` is the
//! part's number (of the job's first source) or `SOURCE.N`.

use std::path::Path;

use std::io::{Read, Seek, Write};

use tiny_http::{Method, Request, StatusCode};

use super::reply::{fail, internal, FileBody, Reply};
use super::Api;
use crate::store::model::PartState;
use crate::store::views;

/// `N` or `SOURCE.N`, both at least 1.
fn part_id(s: &str) -> Option<(i64, i64)> {
    let (source, n) = s.split_once('.').unwrap_or(("1", s));
    let (source, n) = (source.parse().ok()?, n.parse().ok()?);
    (source >= 1 && n >= 1).then_some((source, n))
}

/// What a `Range` header asks of a body of `len` bytes: `None` for the whole
/// body (no header, a unit other than bytes, or several ranges, which a server
/// may answer in full), `Some(Err)` when it cannot be satisfied.
fn range(header: Option<&str>, len: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = header?.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let r = match (a.parse::<u64>(), b.parse::<u64>()) {
        // bytes=-N: the last N bytes.
        (Err(_), Ok(n)) if a.is_empty() && n > 0 && len > 0 => Ok((len.saturating_sub(n), len - 1)),
        (Ok(start), Err(_)) if b.is_empty() && start < len => Ok((start, len - 1)),
        (Ok(start), Ok(end)) if start <= end && start < len => Ok((start, end.min(len - 1))),
        (Ok(_), _) | (_, Ok(_)) => Err(()),
        _ => return None,
    };
    Some(r)
}

fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

impl Api {
    pub(super) fn part_content(&self, req: &Request, id: &str, part: &str) -> Result<Reply, Reply> {
        let Some((source, n)) = part_id(part) else {
            return Err(fail(
                400,
                "BAD_REQUEST",
                format!("part {part:?}: give its number (3) or SOURCE.NUMBER (2.3)"),
            ));
        };
        let found = self
            .store
            .read(|c| Ok((views::exists(c, id)?, views::part(c, id, source, n)?)))
            .map_err(internal)?;
        let p = match found {
            (false, _) => return Err(fail(404, "NOT_FOUND", format!("no job {id}"))),
            (true, None) => return Err(fail(404, "NOT_FOUND", format!("job {id} has no part {source}.{n}"))),
            (true, Some(p)) => p,
        };
        let (Some(bytes), Some(sha), PartState::Done) = (p.bytes, p.sha256.as_deref(), p.state) else {
            return Err(fail(
                409,
                "PART_NOT_READY",
                format!("part {source}.{n} is not written yet; wait for it (GET /v1/jobs/{id}/parts)"),
            ));
        };
        let path = Path::new(&p.path);
        let gone = || {
            fail(
                410,
                "PART_GONE",
                format!(
                    "the file of part {source}.{n} ({}) is gone or changed on disk; run the job again (POST /v1/jobs/{id}/retry)",
                    path.display()
                ),
            )
        };
        let file = std::fs::File::open(path).map_err(|_| gone())?;
        let len = file.metadata().map_err(|_| gone())?.len();
        if len != bytes as u64 {
            return Err(gone());
        }
        let etag = format!("\"{sha}\"");
        let name = path.file_name().map(|f| f.to_string_lossy().replace('"', "")).unwrap_or_default();
        let mut headers = vec![
            ("ETag", etag.clone()),
            ("Accept-Ranges", "bytes".into()),
            ("Content-Disposition", format!("attachment; filename=\"{name}\"")),
            ("Cache-Control", "private, no-cache".into()),
        ];
        let text = |status: u16, headers: Vec<(&'static str, String)>| Reply {
            headers,
            ..Reply::text(status, String::new(), "application/zip")
        };
        if header(req, "If-None-Match").is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*")) {
            return Ok(text(304, headers));
        }
        // A range applies only to the representation the client has (RFC 9110 13.1.5).
        let ranged = header(req, "If-Range").is_none_or(|v| v.trim() == etag);
        let (status, offset, count) = match range(header(req, "Range").filter(|_| ranged), len) {
            None => (200, 0, len),
            Some(Ok((a, b))) => {
                headers.push(("Content-Range", format!("bytes {a}-{b}/{len}")));
                (206, a, b - a + 1)
            }
            Some(Err(())) => {
                headers.push(("Content-Range", format!("bytes */{len}")));
                let mut r = fail(416, "RANGE_NOT_SATISFIABLE", format!("the part is {len} bytes"));
                r.headers.extend(headers);
                return Err(r);
            }
        };
        Ok(Reply {
            file: Some(FileBody { file, offset, len: count }),
            ..text(status, headers)
        })
    }
}

/// Sends a file body on the request's own connection, in 1 MiB writes.
/// tiny_http copies a response body through a type-erased reader with an
/// 8 KiB buffer (131,072 `sendto` calls a GiB, measured with strace; ~800
/// MB/s on loopback), so a download writes its status line, headers and body
/// itself. The connection stays usable: tiny_http writes the next response on
/// it only after this writer is dropped. A HEAD gets the headers alone.
pub(super) fn send_file(req: Request, status: u16, content_type: &str, headers: &[(&str, String)], f: FileBody) -> std::io::Result<()> {
    let head_only = *req.method() == Method::Head;
    let FileBody { mut file, offset, len } = f;
    file.seek(std::io::SeekFrom::Start(offset))?;
    let mut out = req.into_writer();
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nServer: batchd\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\n",
        StatusCode(status).default_reason_phrase()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    if !head_only {
        let mut buf = vec![0u8; 1 << 20];
        let mut body = file.take(len);
        loop {
            let n = body.read(&mut buf)?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])?;
        }
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(range(None, 10), None);
        assert_eq!(range(Some("bytes=0-4"), 10), Some(Ok((0, 4))));
        assert_eq!(range(Some("bytes=5-"), 10), Some(Ok((5, 9))));
        assert_eq!(range(Some("bytes=-3"), 10), Some(Ok((7, 9))));
        assert_eq!(range(Some("bytes=-30"), 10), Some(Ok((0, 9))));
        assert_eq!(range(Some("bytes=8-100"), 10), Some(Ok((8, 9))));
        assert_eq!(range(Some("bytes=10-"), 10), Some(Err(())));
        assert_eq!(range(Some("bytes=5-4"), 10), Some(Err(())));
        assert_eq!(range(Some("bytes=-0"), 10), Some(Err(())));
        assert_eq!(range(Some("bytes=0-1,3-4"), 10), None);
        assert_eq!(range(Some("items=0-1"), 10), None);
        assert_eq!(part_id("3"), Some((1, 3)));
        assert_eq!(part_id("2.3"), Some((2, 3)));
        assert_eq!(part_id("0"), None);
        assert_eq!(part_id("x"), None);
    }
}
