//! The OpenAPI 3.1 description, generated from the handlers' annotations and these schema
//! types (documentation only: bodies are validated by `domain::requests`, which reports every
//! problem at once).
#![allow(dead_code)]

use serde_json::Value;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

#[derive(ToSchema)]
pub struct Problem {
    #[schema(example = "about:blank")]
    r#type: String,
    title: String,
    status: u16,
    detail: String,
    #[schema(example = json!(["capability_not_live_verified:fyp_warmup"]))]
    errors: Vec<String>,
}

#[derive(ToSchema)]
pub struct Target {
    /// `direct`, `queue` or `group`.
    routing: String,
    phone_id: Option<String>,
    account_id: Option<String>,
    phone_group: Option<String>,
    account_group: Option<String>,
    phone_ids: Option<Vec<String>>,
    account_ids: Option<Vec<String>>,
}

#[derive(ToSchema)]
pub struct CallbackDoc {
    url: String,
    #[schema(value_type = Object)]
    metadata: Option<Value>,
}

#[derive(ToSchema)]
pub struct RequestedBy {
    system: String,
    user: Option<String>,
    #[schema(value_type = Object)]
    metadata: Option<Value>,
}

/// Body of `POST /capability-requests/enqueue`.
#[derive(ToSchema)]
pub struct EnqueueBody {
    request_id: String,
    /// `keyword_warmup`, `fyp_warmup` or `maintenance`.
    capability: String,
    /// `manual` or `unattended`.
    mode: String,
    target: Target,
    /// Per capability (contract section 4).
    #[schema(value_type = Object)]
    inputs: Value,
    callback: CallbackDoc,
    requested_by: RequestedBy,
}

/// Body of `POST /maintenance/requests`.
#[derive(ToSchema)]
pub struct MaintenanceBody {
    request_id: String,
    account_id: String,
    #[schema(value_type = Object)]
    inputs: Value,
    callback: CallbackDoc,
    requested_by: RequestedBy,
}

#[derive(ToSchema)]
pub struct Accepted {
    #[schema(example = "accepted")]
    status: String,
    process_id: String,
    request_id: String,
    process_type: String,
    duplicate: Option<bool>,
    process_status: Option<String>,
    payload_mismatch: Option<bool>,
}

#[derive(ToSchema)]
pub struct Timestamps {
    created_at: String,
    accepted_at: Option<String>,
    queued_at: Option<String>,
    executing_at: Option<String>,
    retrying_at: Option<String>,
    cancel_requested_at: Option<String>,
    finished_at: Option<String>,
}

#[derive(ToSchema)]
pub struct LinkedIds {
    queue_item_ids: Vec<String>,
    completed_queue_item_ids: Vec<String>,
    failed_queue_item_ids: Vec<String>,
    cancelled_queue_item_ids: Vec<String>,
}

#[derive(ToSchema)]
pub struct ProcessDoc {
    process_id: String,
    process_type: String,
    request_id: String,
    /// `queued`, `executing`, `retrying`, `completed`, `failed_terminal`, `cancelled`.
    status: String,
    #[schema(value_type = Object)]
    target: Value,
    requested_by: RequestedBy,
    callback: CallbackDoc,
    #[schema(value_type = Object)]
    result: Value,
    #[schema(value_type = Object)]
    error: Option<Value>,
    timestamps: Timestamps,
    linked_ids: LinkedIds,
    #[schema(value_type = Object)]
    partial_progress: Value,
}

#[derive(ToSchema)]
pub struct ProcessList {
    processes: Vec<ProcessDoc>,
    next_cursor: Option<String>,
}

#[derive(ToSchema)]
pub struct CancelBody {
    reason: String,
    requested_by: RequestedBy,
    /// `soft`, `hard` or `soft_then_force` (default).
    strategy: Option<String>,
    force_after_seconds: Option<u32>,
}

#[derive(ToSchema)]
pub struct CancelResponse {
    /// `cancel_requested` or `ignored_terminal`.
    status: String,
    cancelled_queue_item_ids: Option<Vec<String>>,
    active_queue_item_ids: Option<Vec<String>>,
    #[schema(value_type = Object)]
    active_target: Option<Value>,
    #[schema(value_type = Object)]
    termination: Option<Value>,
    #[schema(value_type = Object)]
    process: Value,
}

#[derive(ToSchema)]
pub struct IngestBody {
    content_id: String,
    account_id: String,
    video_path: String,
    caption: String,
    hashtags: Option<Vec<String>>,
    sound_id: Option<String>,
    cover_image_path: Option<String>,
    callback_url: Option<String>,
    scheduling_hint: Option<String>,
    #[schema(value_type = Object)]
    metadata: Option<Value>,
}

#[derive(ToSchema)]
pub struct IngestAccepted {
    /// `accepted` or `duplicate`.
    status: String,
    queue_item_id: String,
    content_id: String,
    account_id: String,
    queue_status: String,
}

#[derive(ToSchema)]
pub struct LegacyCancelBody {
    content_id: String,
    account_id: String,
    reason: Option<String>,
}

#[derive(ToSchema)]
pub struct LegacyCancelled {
    status: String,
    queue_item_id: String,
    previous_status: String,
}

#[derive(ToSchema)]
pub struct SnapshotBody {
    account_id: String,
    ugc_account_id: String,
    snapshot_id: String,
    strategy_version: i64,
    content_hash: String,
    strategy_synced_at: String,
    stage: String,
    active_action: String,
    active_skills: Vec<String>,
    #[schema(value_type = Object)]
    personality: Value,
}

#[derive(ToSchema)]
pub struct SnapshotResult {
    /// `upserted` or `ignored_stale`.
    status: String,
    account_id: String,
    snapshot_id: String,
    strategy_version: i64,
    strategy_synced_at: Option<String>,
}

#[derive(ToSchema)]
pub struct AccountBody {
    phone_id: Option<String>,
    platform_username: Option<String>,
    active: Option<bool>,
}

#[derive(ToSchema)]
pub struct AccountDoc {
    account_id: String,
    phone_id: Option<String>,
    platform_username: Option<String>,
    active: bool,
    created_at: String,
    updated_at: String,
}

#[derive(ToSchema)]
pub struct AccountList {
    accounts: Vec<AccountDoc>,
}

#[derive(ToSchema)]
pub struct CapabilityBody {
    manual: bool,
    unattended: bool,
    live_verified: bool,
    routings: Vec<String>,
}

#[derive(ToSchema)]
pub struct CapabilityList {
    capabilities: Vec<crate::domain::capabilities::CapabilityRule>,
}

/// One agent as mirrored from its presence (`GET /agents`).
#[derive(ToSchema)]
pub struct AgentDoc {
    agent_id: String,
    version: Option<String>,
    host: Option<String>,
    started_at: Option<String>,
    last_heartbeat_at: Option<String>,
    online: bool,
    /// `online` or `offline` (silent for 30 s).
    state: String,
    phone_count: i64,
    enrolled_at: Option<String>,
}

#[derive(ToSchema)]
pub struct AgentList {
    agents: Vec<AgentDoc>,
}

/// One phone as its agent reports it, with the operators' fields (`GET /phones/{id}`).
#[derive(ToSchema)]
pub struct PhoneDoc {
    phone_id: String,
    /// Defaults to the phone id.
    label: String,
    serial: Option<String>,
    agent_id: Option<String>,
    /// USB port path (`1-2.3`) or `host:port`.
    location: Option<String>,
    /// `usb` or `tcp`.
    transport: Option<String>,
    /// `online`, `unauthorized`, `offline`, `busy` or `needs_attention`.
    state: String,
    reported_state: Option<String>,
    attended: bool,
    enabled: bool,
    model: Option<String>,
    android_version: Option<String>,
    battery_level: Option<i32>,
    temperature_c: Option<f64>,
    storage_free_bytes: Option<i64>,
    screen_state: Option<String>,
    /// The TikTok app's version name.
    app_version: Option<String>,
    current_queue_item_id: Option<String>,
    last_seen_at: Option<String>,
    updated_at: String,
}

#[derive(ToSchema)]
pub struct PhoneList {
    phones: Vec<PhoneDoc>,
}

/// Body of `PUT /phones/{phone_id}`: absent fields stay as they are.
#[derive(ToSchema)]
pub struct PhonePatch {
    /// 1–100 characters; `null` goes back to the phone id.
    label: Option<String>,
    /// Only attended phones take `manual` work.
    attended: Option<bool>,
    /// A disabled phone gets no new work.
    enabled: Option<bool>,
}

/// Body of `POST /phones/{phone_id}/move`.
#[derive(ToSchema)]
pub struct PhoneMoveRequest {
    /// The agent that holds the phone from now on (a known agent).
    agent_id: String,
    /// Why, for the record (at most 200 characters).
    note: Option<String>,
}

/// One change of a phone's agent.
#[derive(ToSchema)]
pub struct PhoneMoveDoc {
    phone_id: String,
    /// `null` for the first sighting.
    from_agent_id: Option<String>,
    to_agent_id: String,
    /// `first_seen`, `holder_gone` (the holder stopped reporting it for the offline window),
    /// `holder_offline` or `operator`.
    reason: String,
    /// `inventory`, or the name of the API key that moved it.
    moved_by: String,
    note: Option<String>,
    moved_at: String,
}

#[derive(ToSchema)]
pub struct PhoneMoveList {
    moves: Vec<PhoneMoveDoc>,
}

/// The internal view of one queue item (`GET /queue-items/{id}`).
#[derive(ToSchema)]
pub struct QueueItemDoc {
    queue_item_id: String,
    process_id: String,
    kind: String,
    /// Internal state: `QUEUED`, `SCHEDULED`, `PLANNED`, `CLAIMED`, `EXECUTING`, `RETRYABLE`,
    /// `DONE`, `PARTIAL`, `DEAD_LETTER`, `CANCELLED`.
    state: String,
    mode: String,
    routing: String,
    agent_id: Option<String>,
    phone_id: Option<String>,
    account_id: Option<String>,
    run_id: Option<String>,
    attempt: i32,
    max_attempts: i32,
    content_id: Option<String>,
    #[schema(value_type = Object)]
    result: Option<Value>,
    #[schema(value_type = Object)]
    last_error: Option<Value>,
    #[schema(value_type = Object)]
    timestamps: Value,
    /// One entry per run attempt: agent, phone, run id, times, outcome, error.
    #[schema(value_type = Vec<Object>)]
    attempts: Vec<Value>,
    /// Every recorded event, coordinator's and agent's.
    #[schema(value_type = Vec<Object>)]
    history: Vec<Value>,
    /// Objects in the agent's `pf_evidence_<agent_id>` store (UI dump, screenshot) per failed attempt.
    #[schema(value_type = Vec<Object>)]
    evidence: Vec<Value>,
}

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Phonefarm API", description = "Runs work on fleets of Android phones."),
    paths(
        super::processes::enqueue, super::processes::maintenance, super::processes::get,
        super::processes::list, super::processes::cancel,
        super::legacy::ingest, super::legacy::cancel, super::legacy::snapshot,
        super::accounts::put, super::accounts::get, super::accounts::list,
        super::capabilities::list, super::capabilities::put,
        super::health::healthz, super::health::readyz, super::health::metrics,
        super::fleet::agents, super::fleet::phones, super::fleet::phone, super::fleet::put_phone,
        super::fleet::move_phone, super::fleet::phone_moves,
        super::queue_items::get,
    ),
    modifiers(&Security),
)]
pub struct ApiDoc;
