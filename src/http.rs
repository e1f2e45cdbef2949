//! The JSON HTTP API on tiny_http: a fixed pool of handler threads, bearer-token
//! auth compared in constant time (everything but `/healthz`), body limits checked
//! from the headers before any body is read, and one function per resource.
//! Handlers read through the pool and write through the store's writer thread.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tiny_http::{Header, Method, Request, Response, Server};

use crate::config::Config;
use crate::engine::{self, Engine};
use crate::store::jobs::{self, NewJob, Reject, Settings};
use crate::store::Store;
use crate::triggers::schedule::{self, Clock};

/// A rendered job view: the write generation it was made at, when, and the body.
type CachedView = (u64, std::time::Instant, Arc<String>);

/// How long a rendered job view may be served again when nothing was written.
const VIEW_TTL: Duration = Duration::from_millis(100);

pub struct Api {
    /// Rendered job views: (write generation, rendered at, body). Many clients
    /// polling one job is the usual load; between writes they get the same bytes.
    views: std::sync::Mutex<std::collections::HashMap<String, CachedView>>,
    pub store: Store,
    pub engine: Arc<Engine>,
    pub config: Arc<Config>,
    pub token: String,
    roots: Vec<PathBuf>,
    clock: Clock,
}

/// A response: status, JSON (or text) body, extra headers.
struct Reply {
    status: u16,
    body: String,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
}

fn reply(status: u16, body: Value) -> Reply {
    Reply {
        status,
        body: body.to_string(),
        content_type: "application/json",
        headers: Vec::new(),
    }
}

/// The browser dashboard (`ui/`), embedded so the binary serves it with no
/// files beside it and no outside assets (the CSP forbids any).
fn ui_asset(path: &str) -> Reply {
    let (body, content_type) = match path {
        "/ui" => {
            let mut r = reply(301, json!({}));
            r.headers.push(("Location", "/ui/".into()));
            return r;
        }
        "/ui/" | "/ui/index.html" => (include_str!("../ui/index.html"), "text/html; charset=utf-8"),
        "/ui/app.js" => (include_str!("../ui/app.js"), "text/javascript; charset=utf-8"),
        "/ui/app.css" => (include_str!("../ui/app.css"), "text/css; charset=utf-8"),
        _ => return fail(404, "NOT_FOUND", "no such dashboard file; open /ui/"),
    };
    Reply {
        status: 200,
        body: body.to_owned(),
        content_type,
        headers: vec![
            (
                "Content-Security-Policy",
                "default-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'".into(),
            ),
            ("X-Content-Type-Options", "nosniff".into()),
            ("Referrer-Policy", "no-referrer".into()),
            ("Cache-Control", "no-cache".into()),
        ],
    }
}

fn fail(status: u16, code: &str, message: impl Into<String>) -> Reply {
    reply(status, json!({"error": {"code": code, "message": message.into()}}))
}

fn reject(r: Reject) -> Reply {
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

fn internal(e: anyhow::Error) -> Reply {
    tracing::error!("request failed: {e:#}");
    fail(500, "INTERNAL", format!("{e:#}"))
}

/// Constant-time comparison, so response timing does not reveal the token.
fn same(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8;
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0xff);
    }
    diff == 0
}

/// Settings for the child jobs of a campaign; unset ones come from `[defaults]`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ChildSettings {
    batch_size: Option<usize>,
    compression: Option<crate::split::Compression>,
    on_missing_file: Option<crate::split::OnMissing>,
    manifest: Option<String>,
    file_column: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CampaignBody {
    parent: String,
    batch_size: i64,
    campaign_id: Option<String>,
    total_children: Option<i64>,
    pattern: Option<String>,
    max_failed_children: Option<i64>,
    #[serde(default)]
    settings: ChildSettings,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    #[serde(default)]
    sources: Vec<String>,
    /// kind "parent": the parent collection and the batch.
    parent: Option<String>,
    start_position: Option<i64>,
    campaign_id: Option<String>,
    campaign_total_children: Option<i64>,
    pattern: Option<String>,
    settings: Option<ChildSettings>,
    #[serde(default = "yes")]
    submit: bool,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    priority: i64,
    batch_size: Option<usize>,
    compression: Option<crate::split::Compression>,
    on_missing_file: Option<crate::split::OnMissing>,
    manifest: Option<String>,
    file_column: Option<String>,
}

/// An optional query parameter, or 400 with `message` when it does not parse.
/// The methods a known path takes (`None`: no such path, a 404).
fn allowed_methods(segs: &[&str]) -> Option<&'static str> {
    Some(match segs {
        ["healthz"] | ["metrics"] | ["ui", ..] => "GET",
        ["v1", "jobs"] | ["v1", "campaigns"] => "GET, POST",
        ["v1", "jobs", _] | ["v1", "jobs", _, "parts"] | ["v1", "events"] | ["v1", "schedules"] | ["v1", "schedules", _] => "GET",
        ["v1", "campaigns", _] => "GET",
        ["v1", "jobs", _, "sources" | "submit" | "cancel"]
        | ["v1", "clean"]
        | ["v1", "campaigns", _, "stop" | "resume"]
        | ["v1", "schedules", _, "run"] => "POST",
        _ => return None,
    })
}

/// An integer query parameter within `min..=max` (documented as such in
/// docs/openapi.yaml): a value outside is refused, not silently clamped.
fn bounded(q: &BTreeMap<String, String>, key: &str, default: i64, min: i64, max: i64) -> Result<i64, Reply> {
    let message = format!("{key} must be a whole number from {min} to {max}");
    match param::<i64>(q, key, &message)? {
        None => Ok(default),
        Some(v) if (min..=max).contains(&v) => Ok(v),
        Some(_) => Err(fail(400, "BAD_REQUEST", message)),
    }
}

fn param<T: std::str::FromStr>(q: &BTreeMap<String, String>, key: &str, message: &str) -> Result<Option<T>, Reply> {
    q.get(key)
        .map(|v| v.parse::<T>())
        .transpose()
        .map_err(|_| fail(400, "BAD_REQUEST", message))
}

/// A century: beyond it a cutoff is before any job, and far enough beyond it
/// is not a date at all.
pub const MAX_KEEP_DAYS: f64 = 36_500.0;

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SourcesBody {
    sources: Vec<String>,
}

impl Api {
    pub fn new(store: Store, engine: Arc<Engine>, config: Arc<Config>, token: String, clock: Clock) -> Api {
        let roots = config
            .allowed_roots()
            .iter()
            .filter_map(|r| std::fs::canonicalize(r).ok())
            .collect();
        Api {
            views: Default::default(),
            store,
            engine,
            config,
            token,
            roots,
            clock,
        }
    }

    /// Starts the handler threads; they end when the server is unblocked.
    pub fn serve(self: &Arc<Self>, server: &Arc<Server>) -> Vec<JoinHandle<()>> {
        (0..self.config.http.workers)
            .map(|i| {
                let (api, server) = (Arc::clone(self), Arc::clone(server));
                std::thread::Builder::new()
                    .name(format!("batchd-http-{i}"))
                    .spawn(move || {
                        while let Ok(req) = server.recv() {
                            api.dispatch(req);
                        }
                    })
                    .expect("spawning an HTTP thread")
            })
            .collect()
    }

    /// tiny_http reads bodies of up to 1 KiB itself, on its per-connection
    /// threads. A larger (or chunked) body is read by whoever handles the request,
    /// and dropping a request drains what is left of its body, so even a refusal
    /// (401, 411, 413) waits for the client. tiny_http gives no socket to put a
    /// timeout on, so such a request is handled on a thread of its own: a client
    /// that stops sending mid-body holds that thread only, never the bounded pool
    /// serving everyone else. Threads stay bounded by open connections, as
    /// tiny_http's own are (one request at a time per connection).
    fn dispatch(self: &Arc<Self>, req: Request) {
        let chunked = req.headers().iter().any(|h| h.field.equiv("Transfer-Encoding"));
        if !chunked && req.body_length().is_none_or(|n| n <= 1024) {
            return self.handle(req);
        }
        let api = Arc::clone(self);
        if let Err(e) = std::thread::Builder::new()
            .name("batchd-http-body".into())
            .spawn(move || api.handle(req))
        {
            tracing::error!("spawning a thread for a request body: {e}");
        }
    }

    fn handle(&self, mut req: Request) {
        let r = self.route(&mut req);
        self.send(req, r);
    }

    fn send(&self, req: Request, r: Reply) {
        let mut resp = Response::from_string(r.body).with_status_code(r.status);
        resp.add_header(Header::from_bytes("Content-Type", r.content_type).expect("valid header"));
        for (k, v) in r.headers {
            resp.add_header(Header::from_bytes(k, v.as_bytes()).expect("valid header"));
        }
        if let Err(e) = req.respond(resp) {
            tracing::debug!("client went away: {e}");
        }
    }

    fn authorized(&self, req: &Request) -> bool {
        req.headers().iter().filter(|h| h.field.equiv("Authorization")).any(|h| {
            let v = h.value.as_str();
            v.strip_prefix("Bearer ")
                .is_some_and(|t| same(t.trim().as_bytes(), self.token.as_bytes()))
        })
    }

    /// Reads a POST body within the limit, or explains why not.
    fn body(&self, req: &mut Request) -> Result<Vec<u8>, Reply> {
        let max = self.config.http.max_body_bytes;
        let chunked = req.headers().iter().any(|h| h.field.equiv("Transfer-Encoding"));
        let Some(len) = req.body_length() else {
            return Err(if chunked {
                fail(411, "LENGTH_REQUIRED", "send the body with a Content-Length header, not chunked")
            } else {
                fail(411, "LENGTH_REQUIRED", "a POST needs a Content-Length header (0 for an empty body)")
            });
        };
        if len as u64 > max {
            // Close the connection: the unread body must not be taken for the next request.
            let mut r = fail(413, "BODY_TOO_LARGE", format!("the body is {len} bytes; the limit is {max}"));
            r.headers.push(("Connection", "close".into()));
            return Err(r);
        }
        let mut body = Vec::with_capacity(len);
        req.as_reader()
            .take(max + 1)
            .read_to_end(&mut body)
            .map_err(|e| fail(400, "BAD_REQUEST", format!("reading the body: {e}")))?;
        Ok(body)
    }

    fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Reply> {
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

    fn route(&self, req: &mut Request) -> Reply {
        let url = req.url().to_owned();
        let (path, query) = url.split_once('?').unwrap_or((&url, ""));
        let query: BTreeMap<String, String> = query
            .split('&')
            .filter(|s| !s.is_empty())
            .map(|kv| {
                kv.split_once('=')
                    .map_or((kv.to_owned(), String::new()), |(k, v)| (k.to_owned(), v.to_owned()))
            })
            .collect();
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let method = req.method().clone();
        // A method the path does not take is refused before anything else (even
        // the token check), with the methods it does take, as RFC 9110 asks.
        if let Some(allow) = allowed_methods(&segs) {
            if !allow.split(", ").any(|m| m == method.as_str()) {
                let mut r = fail(405, "METHOD_NOT_ALLOWED", format!("{method} is not allowed on {path}; use {allow}"));
                r.headers.push(("Allow", allow.to_owned()));
                return r;
            }
        }
        if segs == ["healthz"] {
            return reply(200, json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}));
        }
        // The dashboard's static files need no token: they hold no data, and the
        // page asks for the token before it calls the API.
        if segs.first() == Some(&"ui") {
            return ui_asset(path);
        }
        if !self.authorized(req) {
            let mut r = fail(
                401,
                "UNAUTHORIZED",
                "send Authorization: Bearer <token> (the token is in DATA_DIR/token)",
            );
            r.headers.push(("WWW-Authenticate", "Bearer realm=\"batchd\"".into()));
            return r;
        }
        let post_body = if method == Method::Post {
            match self.body(req) {
                Ok(b) => Some(b),
                Err(r) => return r,
            }
        } else {
            None
        };
        let body = post_body.as_deref().unwrap_or_default();
        let r = match (&method, segs.as_slice()) {
            (Method::Get, ["metrics"]) => self.metrics(),
            (Method::Post, ["v1", "jobs"]) => self.create(req, body),
            (Method::Get, ["v1", "jobs"]) => self.list(&query),
            (Method::Get, ["v1", "jobs", id]) => self.get(id),
            (Method::Get, ["v1", "jobs", id, "parts"]) => self.parts(id),
            (Method::Post, ["v1", "jobs", id, "sources"]) => self.add_sources(id, body),
            (Method::Post, ["v1", "jobs", id, "submit"]) => Ok(self.act(id, jobs::submit)),
            (Method::Post, ["v1", "jobs", id, "cancel"]) => {
                let r = self.act(id, jobs::cancel);
                if r.status == 200 {
                    self.engine.cancel_job(id);
                }
                Ok(r)
            }
            (Method::Get, ["v1", "events"]) => self.events(&query),
            (Method::Get, ["v1", "schedules"]) => self.schedules(),
            (Method::Post, ["v1", "clean"]) => self.clean(body),
            (Method::Post, ["v1", "campaigns"]) => self.create_campaign(body),
            (Method::Get, ["v1", "campaigns"]) => self.campaigns(&query),
            (Method::Get, ["v1", "campaigns", id]) => self.campaign(id),
            (Method::Post, ["v1", "campaigns", id, "stop"]) => self.campaign_state(id, true),
            (Method::Post, ["v1", "campaigns", id, "resume"]) => self.campaign_state(id, false),
            (Method::Get, ["v1", "schedules", name]) => self.schedule(name, &query),
            (Method::Post, ["v1", "schedules", name, "run"]) => self.run_schedule(name),
            _ => Ok(fail(404, "NOT_FOUND", format!("no such endpoint: {path}"))),
        };
        r.unwrap_or_else(|e| e)
    }

    fn view(&self, id: &str) -> anyhow::Result<Option<Value>> {
        let stall = self.config.engine.stall_seconds;
        self.store.read(|c| jobs::view(c, id, stall))
    }

    fn get(&self, id: &str) -> Result<Reply, Reply> {
        let generation = self.store.bell.generation();
        if let Some((g, at, body)) = self.views.lock().unwrap().get(id) {
            if *g == generation && at.elapsed() < VIEW_TTL {
                return Ok(Reply {
                    status: 200,
                    body: body.to_string(),
                    content_type: "application/json",
                    headers: Vec::new(),
                });
            }
        }
        match self.view(id).map_err(internal)? {
            Some(v) => {
                let body = Arc::new(v.to_string());
                let mut views = self.views.lock().unwrap();
                if views.len() > 4096 {
                    views.clear();
                }
                views.insert(id.to_owned(), (generation, std::time::Instant::now(), Arc::clone(&body)));
                Ok(Reply {
                    status: 200,
                    body: body.to_string(),
                    content_type: "application/json",
                    headers: Vec::new(),
                })
            }
            None => Ok(reject(Reject::NotFound)),
        }
    }

    fn parts(&self, id: &str) -> Result<Reply, Reply> {
        let id = id.to_owned();
        let (exists, parts) = self
            .store
            .read(|c| Ok((jobs::exists(c, &id)?, jobs::parts(c, &id)?)))
            .map_err(internal)?;
        if !exists {
            return Ok(reject(Reject::NotFound));
        }
        Ok(reply(200, json!({"parts": parts})))
    }

    fn list(&self, q: &BTreeMap<String, String>) -> Result<Reply, Reply> {
        let status = q.get("status").map(|s| s.to_ascii_uppercase());
        if let Some(s) = &status {
            if !["DRAFT", "QUEUED", "PROCESSING", "COMPLETED", "FAILED", "CANCELLED"].contains(&s.as_str()) {
                return Err(fail(400, "BAD_REQUEST", format!("unknown status {s:?}")));
            }
        }
        let limit = bounded(q, "limit", 50, 1, 500)?;
        let after = param::<i64>(q, "after", "after must be the `next` value of a previous page")?;
        let stall = self.config.engine.stall_seconds;
        let kind = q.get("kind").cloned();
        if kind.as_deref().is_some_and(|k| k != "ingest" && k != "parent") {
            return Err(fail(400, "BAD_REQUEST", "kind is \"ingest\" or \"parent\""));
        }
        let filter = jobs::Filter {
            status: status.as_deref(),
            campaign_id: q.get("campaign_id").map(|s| s.as_str()),
            kind: kind.as_deref(),
        };
        let (list, next) = self.store.read(|c| jobs::list(c, &filter, limit, after, stall)).map_err(internal)?;
        Ok(reply(200, json!({"jobs": list, "next": next})))
    }

    fn events(&self, q: &BTreeMap<String, String>) -> Result<Reply, Reply> {
        let after = param::<i64>(q, "after", "after must be an event id")?.unwrap_or(0);
        let wait = param::<f64>(q, "wait", "wait must be seconds")?.unwrap_or(0.0);
        // NaN would panic in Duration; anything else is held to 0..=30 s.
        if wait.is_nan() {
            return Err(fail(400, "BAD_REQUEST", "wait must be seconds"));
        }
        let wait = wait.clamp(0.0, 30.0);
        let deadline = std::time::Instant::now() + Duration::from_secs_f64(wait);
        loop {
            let generation = self.store.bell.generation();
            let events = self.store.read(|c| jobs::events(c, after, 500)).map_err(internal)?;
            let now = std::time::Instant::now();
            if !events.is_empty() || now >= deadline {
                let next = events.last().and_then(|e| e["id"].as_i64()).unwrap_or(after);
                return Ok(reply(200, json!({"events": events, "next": next})));
            }
            self.store.bell.wait_since(generation, deadline - now);
        }
    }

    /// Resolves and checks a source path: it must exist and lie below an allowed root.
    fn check_source(&self, p: &str) -> Result<String, Reply> {
        let canon = std::fs::canonicalize(p).map_err(|e| fail(400, "SOURCE_NOT_FOUND", format!("{p}: {e}")))?;
        if !self.roots.iter().any(|r| canon.starts_with(r)) {
            let roots: Vec<String> = self.roots.iter().map(|r| r.display().to_string()).collect();
            return Err(fail(
                403,
                "FORBIDDEN_PATH",
                format!(
                    "{} is outside the allowed roots ({}); add its directory to http.allowed_roots",
                    canon.display(),
                    roots.join(", ")
                ),
            ));
        }
        Ok(canon.to_string_lossy().into_owned())
    }

    fn check_sources(&self, paths: &[String], existing: &[String]) -> Result<Vec<String>, Reply> {
        let checked = paths.iter().map(|p| self.check_source(p)).collect::<Result<Vec<_>, _>>()?;
        let mut stems = std::collections::HashSet::new();
        for p in existing.iter().chain(&checked) {
            if !stems.insert(crate::split::source::stem(Path::new(p))) {
                return Err(fail(
                    400,
                    "DUPLICATE_SOURCE",
                    format!(
                        "two sources of one job would write parts named {}-part*.zip; submit them as separate jobs",
                        crate::split::source::stem(Path::new(p))
                    ),
                ));
            }
        }
        Ok(checked)
    }

    fn create(&self, req: &Request, body: &[u8]) -> Result<Reply, Reply> {
        let parsed: Value = Self::json(body)?;
        let b: CreateBody = serde_json::from_value(parsed.clone()).map_err(|e| fail(400, "BAD_REQUEST", e.to_string()))?;
        match b.kind.as_deref() {
            // A field of the other kind would be ignored; a client that sent it
            // meant something, so it is refused rather than dropped.
            None | Some("ingest") => {
                if b.parent.is_some()
                    || b.start_position.is_some()
                    || b.campaign_id.is_some()
                    || b.campaign_total_children.is_some()
                    || b.pattern.is_some()
                    || b.settings.is_some()
                {
                    return Err(fail(
                        400,
                        "BAD_REQUEST",
                        "parent, start_position, campaign_id, campaign_total_children, pattern and settings belong to \"kind\": \"parent\"",
                    ));
                }
            }
            Some("parent") => {
                if b.compression.is_some() || b.on_missing_file.is_some() || b.manifest.is_some() || b.file_column.is_some() {
                    return Err(fail(
                        400,
                        "BAD_REQUEST",
                        "a parent job's children take compression, on_missing_file, manifest and file_column in \"settings\"",
                    ));
                }
                return self.create_parent(b);
            }
            Some(k) => return Err(fail(400, "BAD_REQUEST", format!("kind {k:?} is not one of \"ingest\", \"parent\""))),
        }
        if b.sources.is_empty() && b.submit {
            return Err(fail(
                400,
                "BAD_REQUEST",
                "a submitted job needs at least one source (or send \"submit\": false for a draft)",
            ));
        }
        let d = &self.config.defaults;
        let settings = Settings {
            batch_size: b.batch_size.unwrap_or(d.batch_size),
            compression: b.compression.unwrap_or(d.compression),
            on_missing_file: b.on_missing_file.unwrap_or(d.on_missing_file),
            manifest: b.manifest.clone().unwrap_or_else(|| d.manifest.clone()),
            file_column: b.file_column.clone().or_else(|| d.file_column.clone()),
        };
        if settings.batch_size == 0 {
            return Err(fail(400, "BAD_REQUEST", "batch_size must be at least 1"));
        }
        let sources = self.check_sources(&b.sources, &[])?;
        let key = req
            .headers()
            .iter()
            .find(|h| h.field.equiv("Idempotency-Key"))
            .map(|h| h.value.as_str().to_owned());
        let id = engine::new_id();
        let job = NewJob {
            out_dir: self.config.data_dir.join("parts").join(&id).to_string_lossy().into_owned(),
            id,
            kind: "ingest".into(),
            sources,
            settings,
            trigger: req
                .headers()
                .iter()
                .find(|h| h.field.equiv("X-Batchd-Trigger"))
                .map_or("api", |h| if h.value.as_str() == "cli" { "cli" } else { "api" })
                .into(),
            submit: b.submit,
            priority: b.priority,
            idempotency: key.map(|k| (k, crate::split::zipwrite::hex(&Sha256::digest(parsed.to_string().as_bytes())))),
        };
        let outcome = self.store.write(move |tx| jobs::create(tx, &job)).map_err(internal)?;
        let (id, created) = outcome.map_err(reject)?;
        let view = self.view(&id).map_err(internal)?.unwrap_or(Value::Null);
        let mut r = reply(if created { 201 } else { 200 }, view);
        r.headers.push(("Location", format!("/v1/jobs/{id}")));
        if !created {
            r.headers.push(("Idempotent-Replayed", "true".into()));
        }
        Ok(r)
    }

    fn child_settings(&self, s: ChildSettings) -> Result<Settings, Reply> {
        let d = &self.config.defaults;
        let settings = Settings {
            batch_size: s.batch_size.unwrap_or(d.batch_size),
            compression: s.compression.unwrap_or(d.compression),
            on_missing_file: s.on_missing_file.unwrap_or(d.on_missing_file),
            manifest: s.manifest.unwrap_or_else(|| d.manifest.clone()),
            file_column: s.file_column.or_else(|| d.file_column.clone()),
        };
        if settings.batch_size == 0 {
            return Err(fail(400, "BAD_REQUEST", "settings.batch_size must be at least 1"));
        }
        Ok(settings)
    }

    /// Checks the parts of a batch every campaign request shares.
    fn batch(&self, parent: &str, batch_size: i64, total: Option<i64>, campaign_id: Option<String>) -> Result<(String, String), Reply> {
        if batch_size < 1 {
            return Err(fail(400, "BAD_REQUEST", "batch_size (children per batch) must be at least 1"));
        }
        if total.is_some_and(|t| t < 1) {
            return Err(fail(400, "BAD_REQUEST", "total_children must be at least 1"));
        }
        let parent = self.check_source(parent)?;
        if !Path::new(&parent).is_dir() {
            return Err(fail(400, "BAD_REQUEST", format!("parent {parent} is not a directory")));
        }
        let id = campaign_id.unwrap_or_else(crate::campaign::new_id);
        if id.is_empty() || id.len() > 128 || !id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(fail(400, "BAD_REQUEST", "campaign_id: 1 to 128 letters, digits, '-', '_' or '.'"));
        }
        Ok((parent, id))
    }

    /// `POST /v1/jobs` with `"kind": "parent"`: one batch for an outside runner.
    fn create_parent(&self, b: CreateBody) -> Result<Reply, Reply> {
        let parent = b
            .parent
            .ok_or_else(|| fail(400, "BAD_REQUEST", "a parent job needs \"parent\": the collection directory"))?;
        if !b.sources.is_empty() {
            return Err(fail(400, "BAD_REQUEST", "a parent job takes \"parent\", not \"sources\""));
        }
        let start = b.start_position.unwrap_or(1);
        if start < 1 {
            return Err(fail(400, "BAD_REQUEST", "start_position is 1-based"));
        }
        let batch_size = b.batch_size.map_or(40, |n| n as i64);
        let (parent, campaign_id) = self.batch(&parent, batch_size, b.campaign_total_children, b.campaign_id)?;
        let batch = crate::campaign::NewBatch {
            campaign_id,
            parent,
            pattern: b.pattern.unwrap_or_else(|| "*".into()),
            start_position: start,
            batch_size,
            total_children: b.campaign_total_children,
            max_failed: None,
            settings: self.child_settings(b.settings.unwrap_or_default())?,
            managed: false,
            trigger: "api".into(),
        };
        let id = self
            .store
            .write(move |tx| crate::campaign::queue_batch(tx, &batch))
            .map_err(internal)?
            .map_err(reject)?;
        let view = self.view(&id).map_err(internal)?.unwrap_or(Value::Null);
        let mut r = reply(201, view);
        r.headers.push(("Location", format!("/v1/jobs/{id}")));
        Ok(r)
    }

    /// Prunes finished jobs now: `older_than_days` (default: the configured
    /// `retention.keep_days`), `delete_parts`, `dry_run` (count only).
    fn clean(&self, body: &[u8]) -> Result<Reply, Reply> {
        #[derive(serde::Deserialize, Default)]
        #[serde(deny_unknown_fields, default)]
        struct CleanBody {
            older_than_days: Option<f64>,
            delete_parts: Option<bool>,
            dry_run: bool,
        }
        // An empty body means "the configured retention".
        let b: CleanBody = if body.iter().all(u8::is_ascii_whitespace) {
            CleanBody::default()
        } else {
            Self::json(body)?
        };
        let days = b.older_than_days.unwrap_or(self.config.retention.keep_days);
        if !(0.0..=MAX_KEEP_DAYS).contains(&days) {
            return Err(fail(
                400,
                "BAD_REQUEST",
                format!("older_than_days must be from 0 to {MAX_KEEP_DAYS}"),
            ));
        }
        let delete_parts = b.delete_parts.unwrap_or(self.config.retention.delete_parts);
        let cutoff = jobs::now() - days * 86_400.0;
        let pruned = crate::store::retention::prune(&self.store, cutoff, delete_parts, b.dry_run).map_err(internal)?;
        Ok(reply(200, serde_json::to_value(pruned).map_err(|e| internal(e.into()))?))
    }

    fn create_campaign(&self, body: &[u8]) -> Result<Reply, Reply> {
        let b: CampaignBody = Self::json(body)?;
        let (parent, id) = self.batch(&b.parent, b.batch_size, b.total_children, b.campaign_id)?;
        if b.max_failed_children.is_some_and(|m| m < 0) {
            return Err(fail(400, "BAD_REQUEST", "max_failed_children must be 0 or more"));
        }
        let batch = crate::campaign::NewBatch {
            campaign_id: id.clone(),
            parent,
            pattern: b.pattern.unwrap_or_else(|| "*".into()),
            start_position: 1,
            batch_size: b.batch_size,
            total_children: b.total_children,
            max_failed: b.max_failed_children,
            settings: self.child_settings(b.settings)?,
            managed: true,
            trigger: "campaign".into(),
        };
        let id2 = id.clone();
        self.store
            .write(move |tx| {
                let exists: bool = tx.query_row("SELECT EXISTS (SELECT 1 FROM campaigns WHERE id = ?1)", [&id2], |r| r.get(0))?;
                if exists {
                    return Ok(Err(Reject::Conflict(format!(
                        "campaign {id2} exists; POST /v1/campaigns/{id2}/resume continues it"
                    ))));
                }
                crate::campaign::queue_batch(tx, &batch)
            })
            .map_err(internal)?
            .map_err(reject)?;
        let mut r = self.campaign(&id)?;
        r.status = 201;
        r.headers.push(("Location", format!("/v1/campaigns/{id}")));
        Ok(r)
    }

    fn campaign(&self, id: &str) -> Result<Reply, Reply> {
        match self.store.read(|c| crate::campaign::view(c, id)).map_err(internal)? {
            Some(v) => Ok(reply(200, v)),
            None => Ok(fail(404, "NOT_FOUND", format!("no campaign {id:?}"))),
        }
    }

    fn campaigns(&self, q: &BTreeMap<String, String>) -> Result<Reply, Reply> {
        let limit = bounded(q, "limit", 50, 1, 500)?;
        let list = self.store.read(|c| crate::campaign::list(c, limit)).map_err(internal)?;
        Ok(reply(200, json!({"campaigns": list})))
    }

    fn campaign_state(&self, id: &str, stop: bool) -> Result<Reply, Reply> {
        let id2 = id.to_owned();
        self.store
            .write(move |tx| crate::campaign::set_running(tx, &id2, stop))
            .map_err(internal)?
            .map_err(|r| match r {
                Reject::NotFound => fail(404, "NOT_FOUND", format!("no campaign {id:?}")),
                other => reject(other),
            })?;
        self.campaign(id)
    }

    fn add_sources(&self, id: &str, body: &[u8]) -> Result<Reply, Reply> {
        let b: SourcesBody = Self::json(body)?;
        let job = self
            .store
            .read(|c| jobs::job_for_task(c, id))
            .map_err(internal)?
            .ok_or_else(|| reject(Reject::NotFound))?;
        if job.status != "DRAFT" {
            return Err(reject(Reject::Conflict(format!(
                "job is {}; sources can only be added to a DRAFT job",
                job.status
            ))));
        }
        let existing = job.sources;
        let sources = self.check_sources(&b.sources, &existing)?;
        let id2 = id.to_owned();
        self.store
            .write(move |tx| jobs::add_sources(tx, &id2, &sources))
            .map_err(internal)?
            .map_err(reject)?;
        self.get(id)
    }

    fn act(&self, id: &str, f: fn(&crate::store::Tx, &str) -> r2d2_sqlite::rusqlite::Result<Result<(), Reject>>) -> Reply {
        let id2 = id.to_owned();
        match self.store.write(move |tx| f(tx, &id2)) {
            Err(e) => internal(e),
            Ok(Err(r)) => reject(r),
            Ok(Ok(())) => self.get(id).unwrap_or_else(|e| e),
        }
    }

    fn schedules(&self) -> Result<Reply, Reply> {
        let states = self
            .store
            .read(|c| Ok(schedule::states(c, &self.config)))
            .map_err(internal)?
            .map_err(internal)?;
        Ok(reply(
            200,
            json!({"schedules": states.into_iter().map(|s| s.json).collect::<Vec<_>>()}),
        ))
    }

    /// One schedule with its recent fires (`?limit=`, default 20).
    fn schedule(&self, name: &str, query: &BTreeMap<String, String>) -> Result<Reply, Reply> {
        let limit = bounded(query, "limit", 20, 1, 1000)?;
        let states = self
            .store
            .read(|c| Ok(schedule::states(c, &self.config)))
            .map_err(internal)?
            .map_err(internal)?;
        let Some(state) = states.into_iter().find(|s| s.name == name) else {
            return Ok(fail(
                404,
                "NOT_FOUND",
                format!("no schedule named {name:?}; GET /v1/schedules lists them"),
            ));
        };
        let fires = self
            .store
            .read(|c| Ok(schedule::history(c, name, limit)))
            .map_err(internal)?
            .map_err(internal)?;
        let mut body = state.json;
        body["fires_recent"] = json!(fires);
        Ok(reply(200, body))
    }

    fn run_schedule(&self, name: &str) -> Result<Reply, Reply> {
        match schedule::run_now(&self.store, &self.config, name, &self.clock) {
            Err(e) => Err(internal(e)),
            Ok(None) => Ok(fail(
                404,
                "NOT_FOUND",
                format!("no schedule named {name:?}; GET /v1/schedules lists them"),
            )),
            Ok(Some(f)) if f.result == "DUPLICATE" => Ok(fail(409, "CONFLICT", "this schedule was just run; try again in a moment")),
            Ok(Some(f)) => Ok(reply(
                201,
                json!({"schedule": name, "scheduled_at": jobs::rfc3339(f.scheduled_at), "result": f.result, "files": f.files, "job_id": f.job_id}),
            )),
        }
    }

    fn metrics(&self) -> Result<Reply, Reply> {
        let running = self.engine.running_tasks();
        let text = self
            .store
            .read(|c| {
                let mut out = String::new();
                out.push_str("# HELP batchd_build_info Build information.\n# TYPE batchd_build_info gauge\n");
                out.push_str(&format!("batchd_build_info{{version=\"{}\"}} 1\n", env!("CARGO_PKG_VERSION")));
                out.push_str("# HELP batchd_jobs Jobs by status.\n# TYPE batchd_jobs gauge\n");
                // Running totals and trigger-kept counts (the `counters` table):
                // constant cost however many jobs are kept.
                let counters: BTreeMap<String, f64> = c
                    .prepare_cached("SELECT name, value FROM counters")?
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()?;
                let counter = |name: &str| counters.get(name).copied().unwrap_or(0.0);
                for s in ["DRAFT", "QUEUED", "PROCESSING", "COMPLETED", "FAILED", "CANCELLED"] {
                    out.push_str(&format!("batchd_jobs{{status=\"{s}\"}} {}\n", counter(&format!("jobs:{s}")) as i64));
                }
                let (rows, bytes) = (counter("rows_processed") as i64, counter("part_bytes") as i64);
                out.push_str(&format!("# HELP batchd_rows_processed_total Manifest rows packed into parts.\n# TYPE batchd_rows_processed_total counter\nbatchd_rows_processed_total {rows}\n"));
                out.push_str(&format!("# HELP batchd_part_bytes_total Bytes of parts written.\n# TYPE batchd_part_bytes_total counter\nbatchd_part_bytes_total {bytes}\n"));
                out.push_str(&format!("# HELP batchd_tasks_running Tasks running now.\n# TYPE batchd_tasks_running gauge\nbatchd_tasks_running {running}\n"));
                out.push_str("# HELP batchd_task_duration_seconds Duration of finished tasks.\n# TYPE batchd_task_duration_seconds histogram\n");
                for kind in ["PLAN", "PACK", "HOOK", "FINISH"] {
                    for b in jobs::TASK_SECONDS_BUCKETS {
                        let n = counter(&jobs::bucket_name(kind, b));
                        out.push_str(&format!("batchd_task_duration_seconds_bucket{{kind=\"{kind}\",le=\"{b}\"}} {n}\n"));
                    }
                    let n = counter(&format!("task_seconds_count:{kind}"));
                    out.push_str(&format!("batchd_task_duration_seconds_bucket{{kind=\"{kind}\",le=\"+Inf\"}} {n}\n"));
                    out.push_str(&format!("batchd_task_duration_seconds_sum{{kind=\"{kind}\"}} {}\n", counter(&format!("task_seconds_sum:{kind}"))));
                    out.push_str(&format!("batchd_task_duration_seconds_count{{kind=\"{kind}\"}} {n}\n"));
                }
                out.push_str("# HELP batchd_watch_files_detected_total Files taken from each watched inbox.\n# TYPE batchd_watch_files_detected_total counter\n");
                let mut detected: BTreeMap<String, i64> = self.config.watches().into_iter().map(|w| (w.name, 0)).collect();
                let mut st = c.prepare("SELECT watch, COUNT(*) FROM watch_files GROUP BY watch")?;
                for r in st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
                    let (w, n) = r?;
                    detected.insert(w, n);
                }
                for (w, n) in detected {
                    out.push_str(&format!("batchd_watch_files_detected_total{{watch=\"{}\"}} {n}\n", label(&w)));
                }
                let states = schedule::states(c, &self.config).map_err(|e| r2d2_sqlite::rusqlite::Error::ToSqlConversionFailure(e.into()))?;
                out.push_str("# HELP batchd_schedule_next_run_timestamp_seconds When each schedule fires next.\n# TYPE batchd_schedule_next_run_timestamp_seconds gauge\n");
                for s in &states {
                    if let Some(t) = s.next {
                        out.push_str(&format!("batchd_schedule_next_run_timestamp_seconds{{schedule=\"{}\"}} {}\n", label(&s.name), t.timestamp()));
                    }
                }
                out.push_str("# HELP batchd_schedule_last_success_timestamp_seconds When each schedule last succeeded (nothing new, or its job completed).\n# TYPE batchd_schedule_last_success_timestamp_seconds gauge\n");
                for s in &states {
                    if let Some(t) = s.last_success {
                        out.push_str(&format!("batchd_schedule_last_success_timestamp_seconds{{schedule=\"{}\"}} {t}\n", label(&s.name)));
                    }
                }
                Ok(out)
            })
            .map_err(internal)?;
        Ok(Reply {
            status: 200,
            body: text,
            content_type: "text/plain; version=0.0.4",
            headers: Vec::new(),
        })
    }
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
