//! `/v1/campaigns`: start a campaign (its first batch), list, view, stop and
//! resume; and the checks a parent job of an outside runner shares with them.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::json;

use super::jobs::{about_filter, check_about, CreateBody};
use super::reply::{bounded, fail, internal, reply, store_error, Reply};
use super::Api;
use crate::store::jobs::{About, Settings};
use crate::store::{Reject, StoreError};

/// Settings for the child jobs of a campaign; unset ones come from `[defaults]`.
pub(super) type ChildSettings = crate::config::SettingsOverride;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CampaignBody {
    parent: String,
    batch_size: i64,
    campaign_id: Option<String>,
    total_children: Option<i64>,
    pattern: Option<String>,
    max_failed_children: Option<i64>,
    #[serde(default)]
    settings: ChildSettings,
    /// Given to every batch and child job of the campaign.
    #[serde(default)]
    priority: i64,
    name: Option<String>,
    description: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    external_ref: Option<String>,
}

impl Api {
    pub(super) fn child_settings(&self, s: ChildSettings) -> Result<Settings, Reply> {
        let settings = self.config.defaults.resolve(s);
        if settings.batch_size == 0 {
            return Err(fail(400, "BAD_REQUEST", "settings.batch_size must be at least 1"));
        }
        Ok(settings)
    }

    /// Checks the parts of a batch every campaign request shares.
    pub(super) fn batch(
        &self,
        parent: &str,
        batch_size: i64,
        total: Option<i64>,
        campaign_id: Option<String>,
    ) -> Result<(String, String), Reply> {
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
    pub(super) fn create_parent(&self, b: CreateBody) -> Result<Reply, Reply> {
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
            priority: b.priority,
            managed: false,
            trigger: "api".into(),
        };
        let id = self
            .store
            .write(move |tx| crate::campaign::queue_batch(tx, &batch))
            .map_err(store_error)?;
        let view = serde_json::to_value(self.view(&id).map_err(internal)?).map_err(internal)?;
        let mut r = reply(201, view);
        r.headers.push(("Location", format!("/v1/jobs/{id}")));
        Ok(r)
    }

    pub(super) fn create_campaign(&self, body: &[u8]) -> Result<Reply, Reply> {
        let b: CampaignBody = Self::json(body)?;
        let about = About {
            name: b.name,
            description: b.description,
            labels: b.labels.unwrap_or_default(),
            external_ref: b.external_ref,
        };
        check_about(&about)?;
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
            priority: b.priority,
            managed: true,
            trigger: "campaign".into(),
        };
        self.store
            .write(move |tx| crate::campaign::start(tx, &batch, &about))
            .map_err(store_error)?;
        let mut r = self.campaign(&id)?;
        r.status = 201;
        r.headers.push(("Location", format!("/v1/campaigns/{id}")));
        Ok(r)
    }

    pub(super) fn campaign(&self, id: &str) -> Result<Reply, Reply> {
        match self.store.read(|c| crate::view::campaign(c, id)).map_err(internal)? {
            Some(v) => Ok(reply(200, serde_json::to_value(v).map_err(internal)?)),
            None => Ok(fail(404, "NOT_FOUND", format!("no campaign {id:?}"))),
        }
    }

    pub(super) fn campaigns(&self, q: &BTreeMap<String, String>) -> Result<Reply, Reply> {
        let limit = bounded(q, "limit", 50, 1, 500)?;
        let (label, external_ref) = about_filter(q)?;
        let label = label.as_ref().map(|(k, v)| (k.as_str(), v.as_str()));
        let list = self
            .store
            .read(|c| crate::campaign::list(c, limit, label, external_ref.as_deref()))
            .map_err(internal)?;
        let list: Vec<crate::view::CampaignView> = list.into_iter().map(crate::view::CampaignView::new).collect();
        Ok(reply(200, json!({"campaigns": list})))
    }

    pub(super) fn campaign_state(&self, id: &str, stop: bool) -> Result<Reply, Reply> {
        let id2 = id.to_owned();
        self.store
            .write(move |tx| crate::campaign::set_running(tx, &id2, stop))
            .map_err(|e| match e {
                StoreError::Refused(Reject::NotFound) => fail(404, "NOT_FOUND", format!("no campaign {id:?}")),
                e => store_error(e),
            })?;
        self.campaign(id)
    }

    /// `POST /v1/campaigns/{id}/retry-failed`: every FAILED child job runs
    /// again as itself, its whole finished parts kept.
    pub(super) fn retry_failed(&self, id: &str) -> Result<Reply, Reply> {
        let not_found = |e| match e {
            StoreError::Refused(Reject::NotFound) => fail(404, "NOT_FOUND", format!("no campaign {id:?}")),
            e => store_error(e),
        };
        let failed = self.store.read(|c| crate::campaign::failed_children(c, id)).map_err(not_found)?;
        let mut children = Vec::with_capacity(failed.len());
        for job in failed {
            let broken = self.broken_parts(&job)?;
            children.push((job, broken));
        }
        let id2 = id.to_owned();
        self.store
            .write(move |tx| crate::campaign::retry_failed(tx, &id2, &children))
            .map_err(not_found)?;
        self.campaign(id)
    }
}
