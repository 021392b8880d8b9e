//! Enqueue and maintenance requests: a capability, its target and inputs, the callback and the
//! caller.

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::inputs::{fyp_warmup, keyword_warmup, maintenance_inputs};
use super::{Callback, RequestedBy, callback, requested_by};
use crate::domain::check::{Checker, MISSING, OUT_OF_RANGE};
use crate::domain::routing::{MAX_GROUP_TARGETS, Target};

/// A validated capability request (enqueue or maintenance).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CapabilityRequest {
    pub request_id: String,
    pub capability: String,
    pub mode: String,
    pub target: Target,
    /// Inputs with every default filled in.
    pub inputs: Value,
    pub callback: Callback,
    pub requested_by: RequestedBy,
}

impl CapabilityRequest {
    /// A canonical fingerprint of the request, to spot a duplicate whose body differs.
    pub fn fingerprint(&self) -> Vec<u8> {
        self.fingerprint_and_size().0
    }

    /// The fingerprint and the length of the canonical serialization it hashes (the size of
    /// the request as stored, defaults included).
    pub fn fingerprint_and_size(&self) -> (Vec<u8>, usize) {
        // serde_json's map keeps keys sorted, so this serialization is canonical.
        let canonical =
            serde_json::to_vec(&serde_json::to_value(self).unwrap_or_default()).unwrap_or_default();
        (Sha256::digest(&canonical).to_vec(), canonical.len())
    }
}

fn target(c: &mut Checker, obj: &Map<String, Value>) -> Option<Target> {
    let t = c.req_obj(obj, "target", "")?;
    let routing = c.req_enum(t, "routing", "target", &["direct", "queue", "group"]);
    let id = (1, 200);
    let phone_id = c.opt_str(t, "phone_id", "target", id.0, id.1);
    let account_id = c.opt_str(t, "account_id", "target", id.0, id.1);
    let phone_group = c.opt_str(t, "phone_group", "target", 1, 200);
    let account_group = c.opt_str(t, "account_group", "target", 1, 200);
    let phone_ids = c.opt_str_array(t, "phone_ids", "target", id, MAX_GROUP_TARGETS);
    let account_ids = c.opt_str_array(t, "account_ids", "target", id, MAX_GROUP_TARGETS);
    let routing = routing?;
    let target = Target {
        routing,
        phone_id: phone_id.ok()?,
        account_id: account_id.ok()?,
        phone_group: phone_group.ok()?,
        account_group: account_group.ok()?,
        phone_ids: phone_ids.ok()?.unwrap_or_default(),
        account_ids: account_ids.ok()?.unwrap_or_default(),
    };
    let before = c.errors.len();
    match target.routing.as_str() {
        "direct" => {
            if target.phone_id.is_none() {
                c.push(MISSING, "target.phone_id");
            }
            if target.account_id.is_none() {
                c.push(MISSING, "target.account_id");
            }
        }
        "queue" => {
            if target.account_id.is_none() {
                c.push(MISSING, "target.account_id");
            }
        }
        _ => {
            let n = target.phone_ids.len() + target.account_ids.len();
            if n == 0 {
                c.push(MISSING, "target.phone_ids|account_ids");
            } else if n > MAX_GROUP_TARGETS {
                c.push(
                    OUT_OF_RANGE,
                    &format!("target:at_most_{MAX_GROUP_TARGETS}_targets"),
                );
            }
        }
    }
    (c.errors.len() == before).then_some(target)
}

fn capability_inputs(
    c: &mut Checker,
    capability: Option<&str>,
    obj: &Map<String, Value>,
) -> Option<Value> {
    let inputs = c.req_obj(obj, "inputs", "")?;
    match capability? {
        "keyword_warmup" => keyword_warmup(c, inputs),
        "fyp_warmup" => fyp_warmup(c, inputs),
        "maintenance" => maintenance_inputs(c, inputs),
        _ => None,
    }
}

/// POST /capability-requests/enqueue. Capability-registry rules are checked by the caller,
/// which holds the registry; their errors join these.
pub fn enqueue(body: &Value) -> Result<CapabilityRequest, Vec<String>> {
    let mut c = Checker::default();
    let Some(obj) = c.root(body) else {
        return Err(c.errors);
    };
    let request_id = c.req_str(obj, "request_id", "", 1, 200);
    let capability = c.req_enum(
        obj,
        "capability",
        "",
        &crate::domain::capabilities::CAPABILITIES,
    );
    let mode = c.req_enum(obj, "mode", "", &["manual", "unattended"]);
    let target = target(&mut c, obj);
    let inputs = capability_inputs(&mut c, capability.as_deref(), obj);
    let callback = callback(&mut c, obj);
    let requested_by = requested_by(&mut c, obj);
    match (
        request_id,
        capability,
        mode,
        target,
        inputs,
        callback,
        requested_by,
    ) {
        (
            Some(request_id),
            Some(capability),
            Some(mode),
            Some(target),
            Some(inputs),
            Some(callback),
            Some(requested_by),
        ) if c.is_ok() => Ok(CapabilityRequest {
            request_id,
            capability,
            mode,
            target,
            inputs,
            callback,
            requested_by,
        }),
        _ => Err(c.errors),
    }
}

/// POST /maintenance/requests: routing `queue` on the account's phone, mode `unattended`.
pub fn maintenance(body: &Value) -> Result<CapabilityRequest, Vec<String>> {
    let mut c = Checker::default();
    let Some(obj) = c.root(body) else {
        return Err(c.errors);
    };
    let request_id = c.req_str(obj, "request_id", "", 1, 200);
    let account_id = c.req_str(obj, "account_id", "", 1, 200);
    let inputs = c
        .req_obj(obj, "inputs", "")
        .and_then(|i| maintenance_inputs(&mut c, i));
    let callback = callback(&mut c, obj);
    let requested_by = requested_by(&mut c, obj);
    match (request_id, account_id, inputs, callback, requested_by) {
        (Some(request_id), Some(account_id), Some(inputs), Some(callback), Some(requested_by))
            if c.is_ok() =>
        {
            Ok(CapabilityRequest {
                request_id,
                capability: "maintenance".into(),
                mode: "unattended".into(),
                target: Target {
                    routing: "queue".into(),
                    account_id: Some(account_id),
                    ..Target::default()
                },
                inputs,
                callback,
                requested_by,
            })
        }
        _ => Err(c.errors),
    }
}
