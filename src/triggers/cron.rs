//! A cron expression in its IANA time zone, and the fire times it gives. Kept
//! apart from the scheduler so that the configuration can validate a rule
//! without depending on the scheduler (which depends on the configuration). A
//! leaf: depends on nothing of ours.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;

/// The machine's time zone: `TZ`, else the `/etc/localtime` link, else UTC.
pub fn local_timezone() -> String {
    let from_env = std::env::var("TZ").ok().map(|t| t.trim_start_matches(':').to_owned());
    let from_link = std::fs::read_link("/etc/localtime")
        .ok()
        .and_then(|p| p.to_str().and_then(|s| s.split_once("zoneinfo/").map(|(_, z)| z.to_owned())));
    from_env
        .into_iter()
        .chain(from_link)
        .find(|z| Tz::from_str(z).is_ok())
        .unwrap_or_else(|| "UTC".into())
}

/// A parsed cron expression in its time zone.
#[derive(Debug, Clone)]
pub struct Rule {
    cron: Cron,
    tz: Tz,
}

impl Rule {
    /// A schedule's rule: its `cron` in its `timezone`, or in the machine's.
    pub fn new(cron: &str, timezone: Option<&str>) -> Result<Rule, String> {
        Rule::parse(cron, timezone.unwrap_or(&local_timezone()))
    }

    pub fn parse(cron: &str, timezone: &str) -> Result<Rule, String> {
        let fields = cron.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(format!(
                "cron {cron:?} has {fields} fields; write 5 (minute hour day month weekday) or 6 (with seconds first)"
            ));
        }
        let cron = Cron::from_str(cron).map_err(|e| format!("cron {cron:?}: {e}"))?;
        let tz = Tz::from_str(timezone).map_err(|_| format!("timezone {timezone:?} is not an IANA time zone name (like Europe/Oslo)"))?;
        Ok(Rule { cron, tz })
    }

    pub fn timezone(&self) -> &str {
        self.tz.name()
    }

    /// The first fire strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.tz), false)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// Fire times in `(from, to]`, oldest first, at most `limit`.
    pub fn fires_between(&self, from: DateTime<Utc>, to: DateTime<Utc>, limit: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut t = from;
        while out.len() < limit {
            match self.next_after(t) {
                Some(n) if n <= to => {
                    out.push(n);
                    t = n;
                }
                _ => break,
            }
        }
        out
    }
}
