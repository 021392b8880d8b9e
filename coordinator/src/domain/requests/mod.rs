//! Validation of every request body into typed values, one file per resource: `processes`
//! (enqueue, maintenance requests and their target), `inputs` (the capabilities' inputs),
//! `cancel` (a process cancel), `legacy` (ingest, legacy cancel, runtime snapshots),
//! `registry` (accounts, capability rules). Each function collects all problems.

mod cancel;
mod inputs;
mod legacy;
mod processes;
mod registry;
#[cfg(test)]
mod tests;

use serde::Serialize;
use serde_json::{Map, Value};

use super::check::Checker;

pub use cancel::{CancelRequest, Strategy, cancel};
pub use inputs::maintenance_inputs;
pub use legacy::{IngestRequest, Snapshot, ingest, legacy_cancel, snapshot};
pub use processes::{CapabilityRequest, enqueue, maintenance};
pub use registry::{AccountPut, account_put, capability_put};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Callback {
    pub url: String,
    pub metadata: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestedBy {
    pub system: String,
    pub user: Option<String>,
    pub metadata: Value,
}

pub(crate) fn callback(c: &mut Checker, obj: &Map<String, Value>) -> Option<Callback> {
    let cb = c.req_obj(obj, "callback", "")?;
    let url = c
        .req_str(cb, "url", "callback", 1, 2048)
        .and_then(|u| c.url(u, "callback.url"));
    let metadata = c.opt_obj(cb, "metadata", "callback");
    Some(Callback {
        url: url?,
        metadata: metadata?,
    })
}

pub fn requested_by(c: &mut Checker, obj: &Map<String, Value>) -> Option<RequestedBy> {
    let rb = c.req_obj(obj, "requested_by", "")?;
    let system = c.req_str(rb, "system", "requested_by", 1, 100);
    let user = c.opt_str(rb, "user", "requested_by", 1, 200);
    let metadata = c.opt_obj(rb, "metadata", "requested_by");
    Some(RequestedBy {
        system: system?,
        user: user.ok()?,
        metadata: metadata?,
    })
}
