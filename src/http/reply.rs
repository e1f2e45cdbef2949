//! What a handler answers: a status, a body (JSON, or text for metrics and the
//! dashboard) and extra headers, with the error shape every endpoint shares
//! (`{"error": {"code", "message"}}`), and the parsing of bodies and query
//! parameters that turns bad input into a 400 with a reason.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::Api;
use crate::store::{Reject, StoreError};

/// A response: status, JSON (or text) body, extra headers; or, for a
/// download, a range of a file streamed in place of the body.
pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) body: String,
    pub(super) content_type: &'static str,
    pub(super) headers: Vec<(&'static str, String)>,
    pub(super) file: Option<FileBody>,
}

/// `len` bytes of `file` from `offset`, sent as the body.
pub(super) struct FileBody {
    pub(super) file: std::fs::File,
    pub(super) offset: u64,
    pub(super) len: u64,
}

impl Reply {
    pub(super) fn text(status: u16, body: String, content_type: &'static str) -> Reply {
        Reply {
            status,
            body,
            content_type,
            headers: Vec::new(),
            file: None,
        }
    }
}

pub(super) fn reply(status: u16, body: Value) -> Reply {
    Reply::text(status, body.to_string(), "application/json")
}

pub(super) fn fail(status: u16, code: &str, message: impl Into<String>) -> Reply {
    reply(status, json!({"error": {"code": code, "message": message.into()}}))
}

pub(super) fn reject(r: Reject) -> Reply {
    match r {
        Reject::NotFound => fail(404, "NOT_FOUND", "no job with that id"),
        Reject::Conflict(m) => fail(409, "CONFLICT", m),
        Reject::KeyReused => fail(
            422,
            "IDEMPOTENCY_KEY_REUSED",
            "this Idempotency-Key was used with a different request body",
        ),
    }
}

/// A store error as a reply: a refusal as its 404/409/422, anything else a 500.
pub(super) fn store_error(e: StoreError) -> Reply {
    match e {
        StoreError::Refused(r) => reject(r),
        e => internal(e),
    }
}

pub(super) fn internal(e: impl Into<anyhow::Error>) -> Reply {
    let e = e.into();
    tracing::error!("request failed: {e:#}");
    fail(500, "INTERNAL", format!("{e:#}"))
}

/// An integer query parameter within `min..=max` (documented as such in
/// docs/openapi.yaml): a value outside is refused, not silently clamped.
pub(super) fn bounded(q: &BTreeMap<String, String>, key: &str, default: i64, min: i64, max: i64) -> Result<i64, Reply> {
    let message = format!("{key} must be a whole number from {min} to {max}");
    match param::<i64>(q, key, &message)? {
        None => Ok(default),
        Some(v) if (min..=max).contains(&v) => Ok(v),
        Some(_) => Err(fail(400, "BAD_REQUEST", message)),
    }
}

pub(super) fn param<T: std::str::FromStr>(q: &BTreeMap<String, String>, key: &str, message: &str) -> Result<Option<T>, Reply> {
    q.get(key)
        .map(|v| v.parse::<T>())
        .transpose()
        .map_err(|_| fail(400, "BAD_REQUEST", message))
}

impl Api {
    pub(super) fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Reply> {
        let text = if body.iter().all(|b| b.is_ascii_whitespace()) {
            &b"{}"[..]
        } else {
            body
        };
        // serde would also take a struct from an array of its fields in order
        // (`[null, true]`); every body is documented as an object (found by
        // schemathesis).
        if text.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(fail(400, "MALFORMED_JSON", "the body must be a JSON object ({...})"));
        }
        serde_json::from_slice(text).map_err(|e| fail(400, "MALFORMED_JSON", format!("at line {}, column {}: {e}", e.line(), e.column())))
    }
}
