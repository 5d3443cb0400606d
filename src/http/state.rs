/*!
What every route needs, shared by the router, the page and both APIs' handlers (which are
clients of the store and of this, not of the router).
*/

use super::origin::HostPolicy;
use crate::metrics::Metrics;
use crate::store::Store;
use std::sync::Arc;

/// What the routes need.
pub struct State {
    pub store: Arc<Store>,
    pub project_id: String,
    /// The bearer token uploads and removals need, when set.
    pub upload_token: Option<String>,
    /// The host names answered to.
    pub hosts: HostPolicy,
    /// What `/metrics` shows; `None` with `--no-metrics`.
    pub metrics: Option<Arc<Metrics>>,
    /// The Deployment Server's API (its key, download URLs).
    pub deployment: super::ds::DeploymentServer,
}
