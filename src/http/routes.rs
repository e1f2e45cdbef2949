//! The one route table: every endpoint's method and path. It drives both
//! dispatch (which handler) and the `Allow` header of a 405 (which methods a
//! path takes), so the two cannot disagree; adding an endpoint is a row here, a
//! variant of [`Endpoint`], and its arm in `Api::route` (the compiler asks for it).

use tiny_http::Method;

/// Every endpoint batchd serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Endpoint {
    Health,
    Metrics,
    Ui,
    CreateJob,
    ListJobs,
    GetJob,
    JobParts,
    PartContent,
    JobEvents,
    JobHealth,
    AddSources,
    SubmitJob,
    CancelJob,
    RetryJob,
    Events,
    Schedules,
    Schedule,
    RunSchedule,
    Clean,
    CreateCampaign,
    ListCampaigns,
    GetCampaign,
    StopCampaign,
    ResumeCampaign,
    RetryFailedChildren,
    Queue,
    Watches,
    Stats,
    PauseQueue,
    ResumeQueue,
    WebhookDeliveries,
}

impl Endpoint {
    /// Health checks and the dashboard's files need no token: they hold no data.
    pub(super) fn needs_token(self) -> bool {
        !matches!(self, Endpoint::Health | Endpoint::Ui)
    }
}

/// `{name}` matches one segment (handed to the handler in order); a final `*`
/// matches whatever follows, nothing included. For a path that takes several
/// methods, the order here is the order of its `Allow` header.
const ROUTES: &[(Method, &str, Endpoint)] = &[
    (Method::Get, "healthz", Endpoint::Health),
    (Method::Get, "metrics", Endpoint::Metrics),
    (Method::Get, "ui/*", Endpoint::Ui),
    (Method::Get, "v1/jobs", Endpoint::ListJobs),
    (Method::Post, "v1/jobs", Endpoint::CreateJob),
    (Method::Get, "v1/jobs/{id}", Endpoint::GetJob),
    (Method::Get, "v1/jobs/{id}/parts", Endpoint::JobParts),
    (Method::Get, "v1/jobs/{id}/parts/{part}/content", Endpoint::PartContent),
    (Method::Head, "v1/jobs/{id}/parts/{part}/content", Endpoint::PartContent),
    (Method::Get, "v1/jobs/{id}/events", Endpoint::JobEvents),
    (Method::Get, "v1/jobs/{id}/health", Endpoint::JobHealth),
    (Method::Post, "v1/jobs/{id}/sources", Endpoint::AddSources),
    (Method::Post, "v1/jobs/{id}/submit", Endpoint::SubmitJob),
    (Method::Post, "v1/jobs/{id}/cancel", Endpoint::CancelJob),
    (Method::Post, "v1/jobs/{id}/retry", Endpoint::RetryJob),
    (Method::Get, "v1/events", Endpoint::Events),
    (Method::Get, "v1/schedules", Endpoint::Schedules),
    (Method::Get, "v1/schedules/{name}", Endpoint::Schedule),
    (Method::Post, "v1/schedules/{name}/run", Endpoint::RunSchedule),
    (Method::Post, "v1/clean", Endpoint::Clean),
    (Method::Get, "v1/campaigns", Endpoint::ListCampaigns),
    (Method::Post, "v1/campaigns", Endpoint::CreateCampaign),
    (Method::Get, "v1/campaigns/{id}", Endpoint::GetCampaign),
    (Method::Post, "v1/campaigns/{id}/stop", Endpoint::StopCampaign),
    (Method::Post, "v1/campaigns/{id}/resume", Endpoint::ResumeCampaign),
    (Method::Post, "v1/campaigns/{id}/retry-failed", Endpoint::RetryFailedChildren),
    (Method::Get, "v1/queue", Endpoint::Queue),
    (Method::Get, "v1/watches", Endpoint::Watches),
    (Method::Get, "v1/stats", Endpoint::Stats),
    (Method::Post, "v1/queue/pause", Endpoint::PauseQueue),
    (Method::Post, "v1/queue/resume", Endpoint::ResumeQueue),
    (Method::Get, "v1/webhooks/deliveries", Endpoint::WebhookDeliveries),
];

/// What the table says about a request.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Lookup<'a> {
    /// The endpoint, with the path's `{…}` segments in order.
    Endpoint(Endpoint, Vec<&'a str>),
    /// The path exists but not with this method; these are the ones it takes.
    NotAllowed(String),
    NoSuchPath,
}

/// The `{…}` segments of `segs` if it matches `pattern`.
fn matches<'a>(pattern: &str, segs: &[&'a str]) -> Option<Vec<&'a str>> {
    let mut params = Vec::new();
    let pat: Vec<&str> = pattern.split('/').collect();
    for (i, p) in pat.iter().enumerate() {
        if *p == "*" && i == pat.len() - 1 {
            return Some(params);
        }
        let seg = segs.get(i)?;
        if p.starts_with('{') {
            params.push(*seg);
        } else if p != seg {
            return None;
        }
    }
    (segs.len() == pat.len()).then_some(params)
}

pub(super) fn find<'a>(method: &Method, segs: &[&'a str]) -> Lookup<'a> {
    let mut allow: Vec<&str> = Vec::new();
    for (m, pattern, endpoint) in ROUTES {
        if let Some(params) = matches(pattern, segs) {
            if m == method {
                return Lookup::Endpoint(*endpoint, params);
            }
            if !allow.contains(&m.as_str()) {
                allow.push(m.as_str());
            }
        }
    }
    if allow.is_empty() {
        Lookup::NoSuchPath
    } else {
        Lookup::NotAllowed(allow.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_parameters_and_allow() {
        let segs = |p: &'static str| p.split('/').collect::<Vec<_>>();
        assert_eq!(
            find(&Method::Get, &segs("v1/jobs/j1/parts")),
            Lookup::Endpoint(Endpoint::JobParts, vec!["j1"])
        );
        assert_eq!(find(&Method::Put, &segs("v1/jobs")), Lookup::NotAllowed("GET, POST".into()));
        assert_eq!(find(&Method::Get, &segs("v1/jobs/j1/cancel")), Lookup::NotAllowed("POST".into()));
        assert_eq!(find(&Method::Get, &segs("ui")), Lookup::Endpoint(Endpoint::Ui, vec![]));
        assert_eq!(find(&Method::Get, &segs("ui/app.js")), Lookup::Endpoint(Endpoint::Ui, vec![]));
        assert_eq!(find(&Method::Get, &segs("v1/nothing")), Lookup::NoSuchPath);
        assert_eq!(find(&Method::Get, &segs("v1/jobs/j1/parts/extra")), Lookup::NoSuchPath);
    }
}
