//! The JSON HTTP API on tiny_http. This module is the server: a fixed pool of
//! handler threads (a request with a large body gets a thread of its own), body
//! limits checked from the headers before any body is read, and `Api::route`,
//! which looks the request up in the one route table (`routes`), refuses a
//! wrong method with the methods the path takes, checks the token (`auth`) and
//! calls the endpoint's handler. One file per resource holds the handlers:
//! `jobs` (with `retry`, `download`, `dry_run`, `sources`), `campaigns`,
//! `schedules`, `watches`, `stats`, `queue`, `clean`, `metrics`, `ui`; what
//! they answer is a `reply::Reply`. Handlers read through the store's pool and
//! write through its writer thread; all SQL is the store's.

mod auth;
mod campaigns;
mod clean;
mod download;
mod dry_run;
mod jobs;
mod metrics;
mod queue;
mod reply;
mod retry;
mod routes;
mod schedules;
mod sources;
mod stats;
mod ui;
mod watches;
mod webhooks;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tiny_http::{Header, Method, Request, Response, Server};

use self::reply::{fail, Reply};
use self::routes::{Endpoint, Lookup};
use crate::config::Config;
use crate::engine::Engine;
use crate::store::Store;
use crate::triggers::schedule::Clock;

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
        let sent = match r.file {
            Some(f) => download::send_file(req, r.status, r.content_type, &r.headers, f),
            None => {
                let mut resp = Response::from_string(r.body).with_status_code(r.status);
                resp.add_header(Header::from_bytes("Content-Type", r.content_type).expect("valid header"));
                for (k, v) in r.headers {
                    resp.add_header(Header::from_bytes(k, v.as_bytes()).expect("valid header"));
                }
                req.respond(resp)
            }
        };
        if let Err(e) = sent {
            tracing::debug!("client went away: {e}");
        }
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
        let found = routes::find(&method, &segs);
        if let Lookup::NotAllowed(allow) = &found {
            let mut r = fail(405, "METHOD_NOT_ALLOWED", format!("{method} is not allowed on {path}; use {allow}"));
            r.headers.push(("Allow", allow.clone()));
            return r;
        }
        let needs_token = !matches!(&found, Lookup::Endpoint(e, _) if !e.needs_token());
        if needs_token && !self.authorized(req) {
            let mut r = fail(
                401,
                "UNAUTHORIZED",
                "send Authorization: Bearer <token> (the token is in DATA_DIR/token)",
            );
            r.headers.push(("WWW-Authenticate", "Bearer realm=\"batchd\"".into()));
            return r;
        }
        let Lookup::Endpoint(endpoint, p) = found else {
            return fail(404, "NOT_FOUND", format!("no such endpoint: {path}"));
        };
        let post_body = if method == Method::Post {
            match self.body(req) {
                Ok(b) => Some(b),
                Err(r) => return r,
            }
        } else {
            None
        };
        let body = post_body.as_deref().unwrap_or_default();
        let r = match endpoint {
            Endpoint::Health => self.health(),
            Endpoint::Ui => Ok(ui::ui_asset(path)),
            Endpoint::Metrics => self.metrics(),
            Endpoint::CreateJob => self.create(req, body),
            Endpoint::ListJobs => self.list(&query),
            Endpoint::GetJob => self.get(p[0]),
            Endpoint::JobParts => self.parts(p[0]),
            Endpoint::PartContent => self.part_content(req, p[0], p[1]),
            Endpoint::JobEvents => self.events(&query, Some(p[0])),
            Endpoint::JobHealth => self.health_of(p[0]),
            Endpoint::AddSources => self.add_sources(p[0], body),
            Endpoint::SubmitJob => Ok(self.act(p[0], crate::store::jobs::submit)),
            Endpoint::CancelJob => {
                let deliver = self.config.hooks.on_cancel == crate::config::OnCancel::Deliver;
                let r = self.act(p[0], move |tx, id| crate::store::jobs::cancel(tx, id, deliver));
                if r.status == 200 {
                    self.engine.job_cancelled(p[0]);
                }
                Ok(r)
            }
            Endpoint::RetryJob => self.retry(p[0], body),
            Endpoint::Events => self.events(&query, None),
            Endpoint::Schedules => self.schedules(),
            Endpoint::Schedule => self.schedule(p[0], &query),
            Endpoint::RunSchedule => self.run_schedule(p[0]),
            Endpoint::Clean => self.clean(body),
            Endpoint::CreateCampaign => self.create_campaign(body),
            Endpoint::ListCampaigns => self.campaigns(&query),
            Endpoint::GetCampaign => self.campaign(p[0]),
            Endpoint::StopCampaign => self.campaign_state(p[0], true),
            Endpoint::ResumeCampaign => self.campaign_state(p[0], false),
            Endpoint::RetryFailedChildren => self.retry_failed(p[0]),
            Endpoint::Queue => self.queue(),
            Endpoint::Watches => self.watches(),
            Endpoint::Stats => self.stats(&query),
            Endpoint::PauseQueue => self.set_queue(true, body),
            Endpoint::ResumeQueue => self.set_queue(false, body),
            Endpoint::WebhookDeliveries => self.webhook_deliveries(&query),
        };
        r.unwrap_or_else(|e| e)
    }
}
