//! Requests of the findings CLI, served by the admin socket or offline.

use protocol::TenantId;
use serde::{Deserialize, Serialize};

use super::pipeline::Pipeline;
use super::store::FindingError;
use super::{Suppression, SuppressionKind};
use crate::time::now_ms;

/// Default number of search hits and change events returned.
pub const DEFAULT_LIMIT: usize = 50;

/// One findings operation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum FindingsRequest {
    /// Search findings and change events of a tenant.
    Search {
        /// Tenant (the mandatory filter).
        tenant: TenantId,
        /// Query in the language of `docs/search.md`.
        query: String,
        /// Hits to return.
        limit: Option<usize>,
        /// Hits to skip (pagination); absent = 0.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        offset: Option<usize>,
        /// Include facet counts.
        facets: bool,
    },
    /// One finding in full.
    Show {
        /// Tenant.
        tenant: TenantId,
        /// Finding id.
        id: String,
    },
    /// Suppress a finding or accept its risk.
    Suppress {
        /// Tenant.
        tenant: TenantId,
        /// Finding id.
        id: String,
        /// Suppression or accepted risk.
        kind: SuppressionKind,
        /// Why.
        reason: String,
        /// Who is accountable.
        owner: String,
        /// Expiry, ms since the epoch.
        expires_ms: Option<u64>,
    },
    /// Remove a suppression.
    Unsuppress {
        /// Tenant.
        tenant: TenantId,
        /// Finding id.
        id: String,
    },
    /// Change events, newest first.
    Changes {
        /// Tenant.
        tenant: TenantId,
        /// Only this asset.
        asset: Option<String>,
        /// Events to return.
        limit: Option<usize>,
    },
    /// An asset's snapshot, baseline and pending drift.
    Asset {
        /// Tenant.
        tenant: TenantId,
        /// Asset name.
        asset: String,
    },
    /// Accept an asset's current snapshot as its baseline.
    AcceptBaseline {
        /// Tenant.
        tenant: TenantId,
        /// Asset name.
        asset: String,
    },
    /// Compliance posture against a framework, with history.
    Posture {
        /// Tenant.
        tenant: TenantId,
        /// Framework key (`nis2`, `iso27001`...).
        framework: String,
        /// History entries to include.
        history: Option<usize>,
    },
    /// Drop and rebuild the search index from the stored findings and changes.
    RebuildIndex,
}

fn json<T: Serialize>(v: T) -> Result<serde_json::Value, FindingError> {
    serde_json::to_value(v).map_err(|e| FindingError::Backend(e.to_string()))
}

impl Pipeline {
    /// Runs one request, answering JSON.
    pub fn handle(&self, req: &FindingsRequest) -> Result<serde_json::Value, FindingError> {
        match req {
            FindingsRequest::Search {
                tenant,
                query,
                limit,
                offset,
                facets,
            } => json(self.search_page(
                tenant,
                query,
                limit.unwrap_or(DEFAULT_LIMIT),
                offset.unwrap_or(0),
                *facets,
            )?),
            FindingsRequest::Show { tenant, id } => json(self.finding(tenant, id)?),
            FindingsRequest::Suppress {
                tenant,
                id,
                kind,
                reason,
                owner,
                expires_ms,
            } => {
                let s = Suppression {
                    kind: *kind,
                    reason: reason.clone(),
                    owner: owner.clone(),
                    created_ms: now_ms(),
                    expires_ms: *expires_ms,
                };
                json(self.set_suppression(tenant, id, Some(s))?)
            }
            FindingsRequest::Unsuppress { tenant, id } => {
                json(self.set_suppression(tenant, id, None)?)
            }
            FindingsRequest::Changes {
                tenant,
                asset,
                limit,
            } => json(self.changes(tenant, asset.as_deref(), limit.unwrap_or(DEFAULT_LIMIT))?),
            FindingsRequest::Asset { tenant, asset } => json(self.asset(tenant, asset)?),
            FindingsRequest::AcceptBaseline { tenant, asset } => {
                json(self.accept_baseline(tenant, asset)?)
            }
            FindingsRequest::Posture {
                tenant,
                framework,
                history,
            } => {
                let posture = self.posture(tenant, framework)?;
                let history = self.posture_history(tenant, framework, history.unwrap_or(10))?;
                Ok(serde_json::json!({ "posture": json(posture)?, "history": json(history)? }))
            }
            FindingsRequest::RebuildIndex => {
                Ok(serde_json::json!({ "documents": self.rebuild_index()? }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::AdminRequest;

    #[test]
    fn requests_round_trip_inside_admin_requests() {
        let req = AdminRequest::Findings(FindingsRequest::Search {
            tenant: TenantId::new("acme").unwrap(),
            query: "severity:high".into(),
            limit: Some(5),
            offset: Some(10),
            facets: true,
        });
        let text = serde_json::to_string(&req).unwrap();
        assert!(
            text.contains("\"op\":\"findings\"") && text.contains("\"action\":\"search\""),
            "{text}"
        );
        match serde_json::from_str::<AdminRequest>(&text).unwrap() {
            AdminRequest::Findings(FindingsRequest::Search { limit, offset, .. }) => {
                assert_eq!((limit, offset), (Some(5), Some(10)))
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
