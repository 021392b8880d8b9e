//! Request-body schemas for the OpenAPI description. Bodies are parsed as JSON and validated
//! by `domain::requests`, which reports every problem at once (serde stops at the first), so
//! these types describe the accepted shape and are never built; the response types are the
//! handlers' own. Unknown fields are ignored.
#![allow(dead_code)]

use serde_json::Value;
use utoipa::ToSchema;

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum Capability {
    KeywordWarmup,
    FypWarmup,
    Maintenance,
}

/// `manual` runs only on phones marked attended; `unattended` needs a live-verified capability.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum Mode {
    Manual,
    Unattended,
}

/// `direct`: `phone_id` + `account_id`; `queue`: `account_id` (its bound phone); `group`:
/// `phone_ids` and/or `account_ids`, one item per pair.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum Routing {
    Direct,
    Queue,
    Group,
}

#[derive(ToSchema)]
pub struct Target {
    routing: Routing,
    #[schema(min_length = 1, max_length = 200)]
    phone_id: Option<String>,
    #[schema(min_length = 1, max_length = 200)]
    account_id: Option<String>,
    /// Reserved: stored and echoed, not used for routing.
    phone_group: Option<String>,
    /// Reserved: stored and echoed, not used for routing.
    account_group: Option<String>,
    #[schema(max_items = 100)]
    phone_ids: Option<Vec<String>>,
    #[schema(max_items = 100)]
    account_ids: Option<Vec<String>>,
}

#[derive(ToSchema)]
pub struct Callback {
    /// `http` or `https`; refused when it resolves to a private or loopback address.
    #[schema(min_length = 1, max_length = 2048, pattern = "^https?://")]
    url: String,
    /// Echoed in every callback as `process.callback_metadata` (default `{}`).
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
}

#[derive(ToSchema)]
pub struct RequestedBy {
    /// The calling system; a key bound to a system may only name that one.
    #[schema(min_length = 1, max_length = 100)]
    system: String,
    #[schema(min_length = 1, max_length = 200)]
    user: Option<String>,
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
}

/// Body of `POST /capability-requests/enqueue`.
#[derive(ToSchema)]
#[schema(example = json!({"request_id": "req-42", "capability": "keyword_warmup",
    "mode": "unattended", "target": {"routing": "queue", "account_id": "acct-1"},
    "inputs": {"keywords": ["pasta", "risotto"], "videos_per_keyword": 3},
    "callback": {"url": "https://crm.example/hooks/phonefarm", "metadata": {"ticket": 7}},
    "requested_by": {"system": "crm", "user": "ana"}}))]
pub struct EnqueueBody {
    /// With `capability` and `requested_by.system`, the idempotency key.
    #[schema(min_length = 1, max_length = 200)]
    request_id: String,
    capability: Capability,
    mode: Mode,
    target: Target,
    /// Per capability: `keyword_warmup` `{keywords, videos_per_keyword?, watch_seconds?,
    /// like_probability?, comment_plan?}`, `fyp_warmup` `{judge_prompt, duration_seconds?,
    /// watch_seconds?, like_probability?}`, `maintenance` `{steps}`.
    #[schema(value_type = Object)]
    inputs: Value,
    callback: Callback,
    requested_by: RequestedBy,
}

/// Body of `POST /maintenance/requests`: a `maintenance` process on the account's phone.
#[derive(ToSchema)]
#[schema(example = json!({"request_id": "req-43", "account_id": "acct-1",
    "inputs": {"steps": [{"action": "edit_profile", "params": {"bio": "home cook"}}]},
    "callback": {"url": "https://crm.example/hooks/phonefarm"},
    "requested_by": {"system": "crm"}}))]
pub struct MaintenanceBody {
    #[schema(min_length = 1, max_length = 200)]
    request_id: String,
    #[schema(min_length = 1, max_length = 200)]
    account_id: String,
    /// `{steps: [{action: "edit_profile", params: {display_name?, bio?, username?}}]}`.
    #[schema(value_type = Object)]
    inputs: Value,
    callback: Callback,
    requested_by: RequestedBy,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum Strategy {
    /// Stop at the next step boundary.
    Soft,
    /// Abort now.
    Hard,
    /// Ask, then abort after `force_after_seconds`.
    SoftThenForce,
}

/// Body of `POST /processes/{process_id}/cancel`.
#[derive(ToSchema)]
#[schema(example = json!({"reason": "customer asked", "requested_by": {"system": "crm"},
    "strategy": "soft_then_force", "force_after_seconds": 10}))]
pub struct CancelBody {
    #[schema(min_length = 1, max_length = 500)]
    reason: String,
    requested_by: RequestedBy,
    /// Default `soft_then_force`.
    strategy: Option<Strategy>,
    /// Default 10.
    #[schema(minimum = 0)]
    force_after_seconds: Option<u32>,
}

/// Body of `POST /ingest`: one `post_video` item, idempotent on `(account_id, content_id)`.
#[derive(ToSchema)]
#[schema(example = json!({"content_id": "clip-7", "account_id": "acct-1",
    "video_path": "https://cdn.example/clip-7.mp4", "caption": "Risotto in 60 seconds",
    "hashtags": ["cooking"]}))]
pub struct IngestBody {
    #[schema(min_length = 1, max_length = 200)]
    content_id: String,
    #[schema(min_length = 1, max_length = 200)]
    account_id: String,
    /// Checked with a HEAD request before the item is queued.
    #[schema(min_length = 1, max_length = 4096, pattern = "^https?://")]
    video_path: String,
    #[schema(min_length = 1, max_length = 4000)]
    caption: String,
    #[schema(max_items = 30)]
    hashtags: Option<Vec<String>>,
    sound_id: Option<String>,
    #[schema(pattern = "^https?://")]
    cover_image_path: Option<String>,
    /// Receives `queue_item.updated` callbacks.
    #[schema(pattern = "^https?://")]
    callback_url: Option<String>,
    /// ISO-8601; in the future, the item waits `SCHEDULED` until then.
    #[schema(format = DateTime)]
    scheduling_hint: Option<String>,
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
}

/// Body of `POST /cancel`.
#[derive(ToSchema)]
#[schema(example = json!({"content_id": "clip-7", "account_id": "acct-1", "reason": "pulled"}))]
pub struct LegacyCancelBody {
    #[schema(min_length = 1, max_length = 200)]
    content_id: String,
    #[schema(min_length = 1, max_length = 200)]
    account_id: String,
    #[schema(max_length = 500)]
    reason: Option<String>,
}

/// Body of `POST /runtime-snapshots/upsert`.
#[derive(ToSchema)]
#[schema(example = json!({"account_id": "acct-1", "ugc_account_id": "ugc-1", "snapshot_id": "snap-3",
    "strategy_version": 4, "content_hash": "9f2c", "strategy_synced_at": "2026-03-22T08:30:00.000Z",
    "stage": "warmup", "active_action": "watch", "active_skills": ["comment"],
    "personality": {"tone": "warm"}}))]
pub struct SnapshotBody {
    #[schema(min_length = 1, max_length = 200)]
    account_id: String,
    #[schema(min_length = 1, max_length = 200)]
    ugc_account_id: String,
    #[schema(min_length = 1, max_length = 200)]
    snapshot_id: String,
    #[schema(minimum = 1)]
    strategy_version: i64,
    #[schema(min_length = 1, max_length = 200)]
    content_hash: String,
    #[schema(format = DateTime)]
    strategy_synced_at: String,
    #[schema(max_length = 200)]
    stage: String,
    #[schema(max_length = 200)]
    active_action: String,
    active_skills: Vec<String>,
    #[schema(value_type = Object)]
    personality: Value,
}

/// Body of `PUT /accounts/{account_id}`.
#[derive(ToSchema)]
#[schema(example = json!({"phone_id": "R58M123", "platform_username": "ana.cooks", "active": true}))]
pub struct AccountBody {
    /// The phone the account is bound to (it may not have been seen yet).
    #[schema(min_length = 1, max_length = 200)]
    phone_id: Option<String>,
    #[schema(min_length = 1, max_length = 200)]
    platform_username: Option<String>,
    /// Default `true`.
    active: Option<bool>,
}

/// Body of `PUT /capabilities/{name}`.
#[derive(ToSchema)]
#[schema(example = json!({"manual": true, "unattended": false, "live_verified": false,
    "routings": ["direct", "queue", "group"]}))]
pub struct CapabilityBody {
    manual: bool,
    unattended: bool,
    live_verified: bool,
    #[schema(min_items = 1, max_items = 3)]
    routings: Vec<Routing>,
}

/// Body of `PUT /phones/{phone_id}`: absent fields stay as they are.
#[derive(ToSchema)]
#[schema(example = json!({"label": "shelf 2 / slot 4", "attended": true}))]
pub struct PhonePatch {
    /// 1–100 characters; `null` goes back to the phone id.
    #[schema(min_length = 1, max_length = 100)]
    label: Option<String>,
    /// Only attended phones take `manual` work.
    attended: Option<bool>,
    /// A disabled phone gets no new work.
    enabled: Option<bool>,
}

/// Body of `POST /phones/{phone_id}/move`.
#[derive(ToSchema)]
#[schema(example = json!({"agent_id": "rack-2", "note": "moved to the second rack"}))]
pub struct PhoneMoveRequest {
    /// The agent that holds the phone from now on (a known agent).
    #[schema(pattern = "^[^.*> ]+$")]
    agent_id: String,
    /// Why, for the record.
    #[schema(max_length = 200)]
    note: Option<String>,
}
