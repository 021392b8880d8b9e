//! Validation of every request body into typed values. Each function collects all problems.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::check::{Checker, INVALID_VALUE, MISSING, OUT_OF_RANGE, Reported, join};
use super::routing::{MAX_GROUP_TARGETS, Target};

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

fn callback(c: &mut Checker, obj: &Map<String, Value>) -> Option<Callback> {
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

fn watch_seconds(c: &mut Checker, inputs: &Map<String, Value>) -> Option<Value> {
    let Some(ws) = inputs.get("watch_seconds").filter(|v| !v.is_null()) else {
        return Some(json!({"min": 8, "max": 25}));
    };
    let Some(ws) = ws.as_object() else {
        c.push("invalid_type", "inputs.watch_seconds:expected_object");
        return None;
    };
    let min = c.opt_int(ws, "min", "inputs.watch_seconds", 1, 300, 8);
    let max = c.opt_int(ws, "max", "inputs.watch_seconds", 1, 300, 25);
    let (min, max) = (min?, max?);
    if min > max {
        c.push(OUT_OF_RANGE, "inputs.watch_seconds:min_above_max");
        return None;
    }
    Some(json!({"min": min, "max": max}))
}

fn keyword_warmup(c: &mut Checker, inputs: &Map<String, Value>) -> Option<Value> {
    let keywords = match c.opt_str_array(inputs, "keywords", "inputs", (1, 100), 20) {
        Ok(Some(k)) if k.is_empty() => {
            c.push(OUT_OF_RANGE, "inputs.keywords:1_to_20_items");
            None
        }
        Ok(Some(k)) => {
            let unique: BTreeSet<_> = k.iter().collect();
            if unique.len() != k.len() {
                c.push(INVALID_VALUE, "inputs.keywords:duplicates");
                None
            } else {
                Some(k)
            }
        }
        Ok(None) => {
            c.push(MISSING, "inputs.keywords");
            None
        }
        Err(Reported) => None,
    };
    let videos = c.opt_int(inputs, "videos_per_keyword", "inputs", 1, 20, 3);
    let watch = watch_seconds(c, inputs);
    let like = c.opt_f64(inputs, "like_probability", "inputs", 0.0, 1.0, 0.0);
    let mut plan_out = None;
    match inputs.get("comment_plan").filter(|v| !v.is_null()) {
        None => {}
        Some(Value::Object(plan)) => {
            let mut out = Map::new();
            let mut ok = true;
            for (k, v) in plan {
                let p = format!("inputs.comment_plan.{k}");
                match v.as_object() {
                    Some(o) => match c.req_str(o, "text", &p, 1, 150) {
                        Some(text) => {
                            out.insert(k.clone(), json!({"text": text}));
                        }
                        None => ok = false,
                    },
                    None => {
                        c.push("invalid_type", &format!("{p}:expected_object"));
                        ok = false;
                    }
                }
            }
            if let Some(kws) = &keywords {
                let want: BTreeSet<&str> = kws.iter().map(String::as_str).collect();
                let have: BTreeSet<&str> = plan.keys().map(String::as_str).collect();
                if want != have {
                    c.raw("needs_comment_plan:comment_plan_keys_must_match_keywords");
                    ok = false;
                }
            }
            if ok {
                plan_out = Some(Value::Object(out));
            }
        }
        Some(_) => c.push("invalid_type", "inputs.comment_plan:expected_object"),
    }
    let mut out = json!({
        "keywords": keywords?,
        "videos_per_keyword": videos?,
        "watch_seconds": watch?,
        "like_probability": like?,
    });
    if let Some(plan) = plan_out {
        out["comment_plan"] = plan;
    }
    Some(out)
}

fn fyp_warmup(c: &mut Checker, inputs: &Map<String, Value>) -> Option<Value> {
    let duration = c.opt_int(inputs, "duration_seconds", "inputs", 60, 3600, 600);
    let watch = watch_seconds(c, inputs);
    let prompt = match inputs.get("judge_prompt").filter(|v| !v.is_null()) {
        None => {
            c.raw("missing_fyp_judge_prompt");
            None
        }
        Some(Value::String(s)) if s.trim().is_empty() => {
            c.raw("missing_fyp_judge_prompt");
            None
        }
        Some(_) => c.req_str(inputs, "judge_prompt", "inputs", 1, 2000),
    };
    let like = c.opt_f64(inputs, "like_probability", "inputs", 0.0, 1.0, 0.0);
    Some(json!({
        "duration_seconds": duration?,
        "watch_seconds": watch?,
        "judge_prompt": prompt?,
        "like_probability": like?,
    }))
}

fn username_ok(s: &str) -> bool {
    s.chars()
        .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '.' || ch == '_')
}

/// `maintenance.inputs` (section 4), shared by enqueue and POST /maintenance/requests.
pub fn maintenance_inputs(c: &mut Checker, inputs: &Map<String, Value>) -> Option<Value> {
    let steps = match inputs.get("steps").filter(|v| !v.is_null()) {
        None => {
            c.push(MISSING, "inputs.steps");
            None
        }
        Some(Value::Array(steps)) if steps.is_empty() || steps.len() > 10 => {
            c.push(OUT_OF_RANGE, "inputs.steps:1_to_10_items");
            None
        }
        Some(Value::Array(steps)) => {
            let mut out = Vec::new();
            let mut ok = true;
            for (i, step) in steps.iter().enumerate() {
                let p = format!("inputs.steps[{i}]");
                let Some(step) = step.as_object() else {
                    c.push("invalid_type", &format!("{p}:expected_object"));
                    ok = false;
                    continue;
                };
                let action = c.req_enum(step, "action", &p, &["edit_profile"]);
                let Some(params) = c.req_obj(step, "params", &p) else {
                    ok = false;
                    continue;
                };
                let pp = join(&p, "params");
                let display_name = c.opt_str(params, "display_name", &pp, 1, 30);
                let bio = c.opt_str(params, "bio", &pp, 0, 80);
                let username = c.opt_str(params, "username", &pp, 2, 24);
                if let Ok(Some(u)) = &username
                    && !username_ok(u)
                {
                    c.push(INVALID_VALUE, &format!("{pp}.username:allowed_a-z0-9._"));
                    ok = false;
                }
                let mutation_kind = c.opt_str(params, "mutation_kind", &pp, 1, 100);
                let randomized = c.opt_bool(params, "randomized", &pp);
                let (Some(action), Ok(display_name), Ok(bio), Ok(username), Ok(mk), Ok(rnd)) = (
                    action,
                    display_name,
                    bio,
                    username,
                    mutation_kind,
                    randomized,
                ) else {
                    ok = false;
                    continue;
                };
                if display_name.is_none() && bio.is_none() && username.is_none() {
                    c.push(MISSING, &format!("{pp}.display_name|bio|username"));
                    ok = false;
                    continue;
                }
                let mut params = Map::new();
                for (k, v) in [
                    ("display_name", display_name),
                    ("bio", bio),
                    ("username", username),
                    ("mutation_kind", mk),
                ] {
                    if let Some(v) = v {
                        params.insert(k.into(), Value::String(v));
                    }
                }
                if let Some(r) = rnd {
                    params.insert("randomized".into(), Value::Bool(r));
                }
                out.push(json!({"action": action, "params": params}));
            }
            ok.then_some(out)
        }
        Some(_) => {
            c.push("invalid_type", "inputs.steps:expected_array");
            None
        }
    };
    let metadata = c.opt_obj(inputs, "metadata", "inputs");
    Some(json!({"steps": steps?, "metadata": metadata?}))
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
    let capability = c.req_enum(obj, "capability", "", &super::capabilities::CAPABILITIES);
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Soft,
    Hard,
    SoftThenForce,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Soft => "soft",
            Strategy::Hard => "hard",
            Strategy::SoftThenForce => "soft_then_force",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CancelRequest {
    pub reason: String,
    pub requested_by: RequestedBy,
    pub strategy: Strategy,
    pub force_after_seconds: i64,
}

pub fn cancel(body: &Value) -> Result<CancelRequest, Vec<String>> {
    let mut c = Checker::default();
    let Some(obj) = c.root(body) else {
        return Err(c.errors);
    };
    let reason = c.req_str(obj, "reason", "", 1, 500);
    let requested_by = requested_by(&mut c, obj);
    let strategy = match c.opt_str(obj, "strategy", "", 1, 50) {
        Ok(None) => Some(Strategy::SoftThenForce),
        Ok(Some(s)) => c
            .enum_value(s, "strategy", &["soft", "hard", "soft_then_force"])
            .map(|s| match s.as_str() {
                "soft" => Strategy::Soft,
                "hard" => Strategy::Hard,
                _ => Strategy::SoftThenForce,
            }),
        Err(Reported) => None,
    };
    let force = c.opt_int(obj, "force_after_seconds", "", 0, 86_400, 10);
    match (reason, requested_by, strategy, force) {
        (Some(reason), Some(requested_by), Some(strategy), Some(force_after_seconds))
            if c.is_ok() =>
        {
            Ok(CancelRequest {
                reason,
                requested_by,
                strategy,
                force_after_seconds,
            })
        }
        _ => Err(c.errors),
    }
}

/// POST /ingest (legacy post_video).
#[derive(Debug, Clone, PartialEq)]
pub struct IngestRequest {
    pub content_id: String,
    pub account_id: String,
    pub video_path: String,
    pub caption: String,
    pub hashtags: Vec<String>,
    pub sound_id: Option<String>,
    pub cover_image_path: Option<String>,
    pub callback_url: Option<String>,
    pub scheduling_hint: Option<time::OffsetDateTime>,
    pub metadata: Value,
}

impl IngestRequest {
    /// The inputs the post_video executor receives.
    pub fn inputs(&self) -> Value {
        json!({
            "content_id": self.content_id,
            "video_path": self.video_path,
            "caption": self.caption,
            "hashtags": self.hashtags,
            "sound_id": self.sound_id,
            "cover_image_path": self.cover_image_path,
        })
    }
}

pub fn ingest(body: &Value) -> Result<IngestRequest, Vec<String>> {
    let mut c = Checker::default();
    let Some(obj) = c.root(body) else {
        return Err(c.errors);
    };
    let content_id = c.req_str(obj, "content_id", "", 1, 200);
    let account_id = c.req_str(obj, "account_id", "", 1, 200);
    let video_path = c
        .req_str(obj, "video_path", "", 1, 4096)
        .and_then(|u| c.url(u, "video_path"));
    let caption = c.req_str(obj, "caption", "", 1, 4000);
    let hashtags = c.opt_str_array(obj, "hashtags", "", (1, 200), 30);
    let sound_id = c.opt_str(obj, "sound_id", "", 1, 200);
    let cover = match c.opt_str(obj, "cover_image_path", "", 1, 4096) {
        Ok(Some(u)) => c.url(u, "cover_image_path").map(Some).ok_or(Reported),
        other => other,
    };
    let callback_url = match c.opt_str(obj, "callback_url", "", 1, 2048) {
        Ok(Some(u)) => c.url(u, "callback_url").map(Some).ok_or(Reported),
        other => other,
    };
    let hint = match c.opt_str(obj, "scheduling_hint", "", 1, 100) {
        Ok(Some(s)) => c.timestamp(&s, "scheduling_hint").map(Some).ok_or(Reported),
        Ok(None) => Ok(None),
        Err(Reported) => Err(Reported),
    };
    let metadata = c.opt_obj(obj, "metadata", "");
    match (
        content_id,
        account_id,
        video_path,
        caption,
        hashtags,
        sound_id,
        cover,
        callback_url,
        hint,
        metadata,
    ) {
        (
            Some(content_id),
            Some(account_id),
            Some(video_path),
            Some(caption),
            Ok(hashtags),
            Ok(sound_id),
            Ok(cover_image_path),
            Ok(callback_url),
            Ok(scheduling_hint),
            Some(metadata),
        ) if c.is_ok() => Ok(IngestRequest {
            content_id,
            account_id,
            video_path,
            caption,
            hashtags: hashtags.unwrap_or_default(),
            sound_id,
            cover_image_path,
            callback_url,
            scheduling_hint,
            metadata,
        }),
        _ => Err(c.errors),
    }
}

/// POST /cancel (legacy).
pub fn legacy_cancel(body: &Value) -> Result<(String, String, Option<String>), Vec<String>> {
    let mut c = Checker::default();
    let Some(obj) = c.root(body) else {
        return Err(c.errors);
    };
    let content_id = c.req_str(obj, "content_id", "", 1, 200);
    let account_id = c.req_str(obj, "account_id", "", 1, 200);
    let reason = c.opt_str(obj, "reason", "", 0, 500);
    match (content_id, account_id, reason) {
        (Some(a), Some(b), Ok(r)) if c.is_ok() => Ok((a, b, r)),
        _ => Err(c.errors),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub account_id: String,
    pub ugc_account_id: String,
    pub snapshot_id: String,
    pub strategy_version: i64,
    pub content_hash: String,
    pub strategy_synced_at: time::OffsetDateTime,
    pub stage: String,
    pub active_action: String,
    pub active_skills: Vec<String>,
    pub personality: Value,
}

pub fn snapshot(body: &Value) -> Result<Snapshot, Vec<String>> {
    let mut c = Checker::default();
    let Some(obj) = c.root(body) else {
        return Err(c.errors);
    };
    let account_id = c.req_str(obj, "account_id", "", 1, 200);
    let ugc = c.req_str(obj, "ugc_account_id", "", 1, 200);
    let snapshot_id = c.req_str(obj, "snapshot_id", "", 1, 200);
    let version = c.req_int(obj, "strategy_version", "", 1, i64::MAX);
    let content_hash = c.req_str(obj, "content_hash", "", 1, 200);
    let synced = c
        .req_str(obj, "strategy_synced_at", "", 1, 100)
        .and_then(|s| c.timestamp(&s, "strategy_synced_at"));
    let stage = c.req_str(obj, "stage", "", 0, 200);
    let action = c.req_str(obj, "active_action", "", 0, 200);
    let skills = match c.opt_str_array(obj, "active_skills", "", (0, 200), 1000) {
        Ok(Some(s)) => Some(s),
        Ok(None) => {
            c.push(MISSING, "active_skills");
            None
        }
        Err(Reported) => None,
    };
    let personality = c
        .req_obj(obj, "personality", "")
        .map(|m| Value::Object(m.clone()));
    match (
        account_id,
        ugc,
        snapshot_id,
        version,
        content_hash,
        synced,
        stage,
        action,
        skills,
        personality,
    ) {
        (
            Some(account_id),
            Some(ugc_account_id),
            Some(snapshot_id),
            Some(strategy_version),
            Some(content_hash),
            Some(strategy_synced_at),
            Some(stage),
            Some(active_action),
            Some(active_skills),
            Some(personality),
        ) if c.is_ok() => Ok(Snapshot {
            account_id,
            ugc_account_id,
            snapshot_id,
            strategy_version,
            content_hash,
            strategy_synced_at,
            stage,
            active_action,
            active_skills,
            personality,
        }),
        _ => Err(c.errors),
    }
}

/// PUT /accounts/{id}.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountPut {
    pub phone_id: Option<String>,
    pub platform_username: Option<String>,
    pub active: bool,
}

pub fn account_put(body: &Value) -> Result<AccountPut, Vec<String>> {
    let mut c = Checker::default();
    let Some(obj) = c.root(body) else {
        return Err(c.errors);
    };
    if !obj.contains_key("phone_id") {
        c.push(MISSING, "phone_id");
    }
    let phone_id = c.opt_str(obj, "phone_id", "", 1, 200);
    let username = c.opt_str(obj, "platform_username", "", 1, 200);
    let active = c.opt_bool(obj, "active", "");
    match (phone_id, username, active) {
        (Ok(phone_id), Ok(platform_username), Ok(active)) if c.is_ok() => Ok(AccountPut {
            phone_id,
            platform_username,
            active: active.unwrap_or(true),
        }),
        _ => Err(c.errors),
    }
}

/// PUT /capabilities/{name}.
pub fn capability_put(
    name: &str,
    body: &Value,
) -> Result<super::capabilities::CapabilityRule, Vec<String>> {
    let mut c = Checker::default();
    let Some(obj) = c.root(body) else {
        return Err(c.errors);
    };
    let manual = c.req_bool(obj, "manual", "");
    let unattended = c.req_bool(obj, "unattended", "");
    let live = c.req_bool(obj, "live_verified", "");
    let routings = match c.opt_str_array(obj, "routings", "", (1, 20), 3) {
        Ok(Some(r)) => {
            let mut ok = true;
            for (i, x) in r.iter().enumerate() {
                if !super::capabilities::ROUTINGS.contains(&x.as_str()) {
                    c.push(
                        INVALID_VALUE,
                        &format!("routings[{i}]:expected_one_of_direct|queue|group"),
                    );
                    ok = false;
                }
            }
            ok.then_some(r)
        }
        Ok(None) => {
            c.push(MISSING, "routings");
            None
        }
        Err(Reported) => None,
    };
    match (manual, unattended, live, routings) {
        (Some(manual), Some(unattended), Some(live_verified), Some(routings)) if c.is_ok() => {
            Ok(super::capabilities::CapabilityRule {
                name: name.into(),
                manual,
                unattended,
                live_verified,
                routings,
            })
        }
        _ => Err(c.errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Value {
        json!({
            "request_id": "req-1",
            "capability": "keyword_warmup",
            "mode": "unattended",
            "target": {"routing": "direct", "phone_id": "p1", "account_id": "a1"},
            "inputs": {"keywords": ["fitness", "cooking"]},
            "callback": {"url": "https://example.com/cb"},
            "requested_by": {"system": "ugc-tracker"}
        })
    }

    #[test]
    fn a_valid_request_gets_defaults() {
        let r = enqueue(&base()).unwrap();
        assert_eq!(r.inputs["videos_per_keyword"], 3);
        assert_eq!(r.inputs["watch_seconds"], json!({"min": 8, "max": 25}));
        assert_eq!(r.inputs["like_probability"], 0.0);
        assert_eq!(r.callback.metadata, json!({}));
        assert_eq!(r.requested_by.metadata, json!({}));
        assert_eq!(
            serde_json::to_value(&r.target).unwrap(),
            json!({"routing": "direct", "phone_id": "p1", "account_id": "a1"})
        );
    }

    #[test]
    fn every_problem_is_reported() {
        let body = json!({
            "request_id": "",
            "capability": "dance",
            "mode": 3,
            "target": {"routing": "direct"},
            "callback": {"url": "ftp://x"},
        });
        let errors = enqueue(&body).unwrap_err();
        for e in [
            "out_of_range:request_id:length_1_to_200",
            "invalid_value:capability:expected_one_of_keyword_warmup|fyp_warmup|maintenance",
            "invalid_type:mode:expected_string",
            "missing_field:target.phone_id",
            "missing_field:target.account_id",
            "missing_field:inputs",
            "invalid_value:callback.url:expected_http_url",
            "missing_field:requested_by",
        ] {
            assert!(
                errors.contains(&e.to_string()),
                "{e} missing from {errors:?}"
            );
        }
    }

    #[test]
    fn comment_plan_keys_must_match_keywords() {
        let mut b = base();
        b["inputs"]["comment_plan"] = json!({"fitness": {"text": "nice"}});
        assert_eq!(
            enqueue(&b).unwrap_err(),
            vec!["needs_comment_plan:comment_plan_keys_must_match_keywords"]
        );
        b["inputs"]["comment_plan"] =
            json!({"fitness": {"text": "nice"}, "cooking": {"text": "yum"}});
        assert!(enqueue(&b).is_ok());
    }

    #[test]
    fn keyword_rules() {
        let mut b = base();
        b["inputs"] = json!({"keywords": ["a", "a"], "videos_per_keyword": 21, "watch_seconds": {"min": 30, "max": 10}, "like_probability": 1.5});
        let errors = enqueue(&b).unwrap_err();
        assert_eq!(
            errors,
            vec![
                "invalid_value:inputs.keywords:duplicates",
                "out_of_range:inputs.videos_per_keyword:1_to_20",
                "out_of_range:inputs.watch_seconds:min_above_max",
                "out_of_range:inputs.like_probability:0_to_1",
            ]
        );
        b["inputs"] = json!({"keywords": []});
        assert_eq!(
            enqueue(&b).unwrap_err(),
            vec!["out_of_range:inputs.keywords:1_to_20_items"]
        );
    }

    #[test]
    fn fyp_needs_a_judge_prompt() {
        let mut b = base();
        b["capability"] = json!("fyp_warmup");
        b["inputs"] = json!({"duration_seconds": 30});
        assert_eq!(
            enqueue(&b).unwrap_err(),
            vec![
                "out_of_range:inputs.duration_seconds:60_to_3600",
                "missing_fyp_judge_prompt"
            ]
        );
        b["inputs"] = json!({"judge_prompt": "home workouts"});
        assert_eq!(enqueue(&b).unwrap().inputs["duration_seconds"], 600);
    }

    #[test]
    fn maintenance_steps() {
        let mut c = Checker::default();
        let inputs = json!({"steps": [{"action": "edit_profile", "params": {"username": "Bad Name"}}, {"action": "delete", "params": {}}]});
        assert!(maintenance_inputs(&mut c, inputs.as_object().unwrap()).is_none());
        assert_eq!(
            c.errors,
            vec![
                "invalid_value:inputs.steps[0].params.username:allowed_a-z0-9._",
                "invalid_value:inputs.steps[1].action:expected_one_of_edit_profile",
            ]
        );
        let mut c = Checker::default();
        let inputs = json!({"steps": [{"action": "edit_profile", "params": {"bio": ""}}]});
        let v = maintenance_inputs(&mut c, inputs.as_object().unwrap()).unwrap();
        assert_eq!(
            v,
            json!({"steps": [{"action": "edit_profile", "params": {"bio": ""}}], "metadata": {}})
        );
    }

    #[test]
    fn fingerprint_ignores_spelled_out_defaults() {
        let a = enqueue(&base()).unwrap();
        let mut b = base();
        b["inputs"]["videos_per_keyword"] = json!(3);
        b["unknown_field"] = json!("ignored");
        assert_eq!(a.fingerprint(), enqueue(&b).unwrap().fingerprint());
        b["inputs"]["videos_per_keyword"] = json!(4);
        assert_ne!(a.fingerprint(), enqueue(&b).unwrap().fingerprint());
    }

    #[test]
    fn cancel_rules() {
        let errors = cancel(&json!({"reason": "x", "requested_by": {"system": "s"}, "strategy": "nuke", "force_after_seconds": -1})).unwrap_err();
        assert_eq!(
            errors,
            vec![
                "invalid_value:strategy:expected_one_of_soft|hard|soft_then_force",
                "out_of_range:force_after_seconds:0_to_86400",
            ]
        );
        let ok = cancel(&json!({"reason": "x", "requested_by": {"system": "s"}})).unwrap();
        assert_eq!(
            (ok.strategy, ok.force_after_seconds),
            (Strategy::SoftThenForce, 10)
        );
    }

    #[test]
    fn ingest_rules() {
        let errors = ingest(&json!({"content_id": "c", "account_id": "a", "video_path": "file:///x", "caption": "", "hashtags": vec!["x"; 31], "scheduling_hint": "tomorrow"})).unwrap_err();
        assert_eq!(
            errors,
            vec![
                "invalid_value:video_path:expected_http_url",
                "out_of_range:caption:length_1_to_4000",
                "out_of_range:hashtags:at_most_30_items",
                "invalid_value:scheduling_hint:expected_rfc3339_timestamp",
            ]
        );
    }

    #[test]
    fn snapshot_rules() {
        let errors = snapshot(&json!({"strategy_version": 0})).unwrap_err();
        assert!(
            errors.contains(&"out_of_range:strategy_version:1_to_9223372036854775807".to_string())
        );
        assert!(errors.contains(&"missing_field:personality".to_string()));
    }
}
