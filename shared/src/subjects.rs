//! NATS subjects, streams, consumers and buckets, next to the messages that travel on them.

/// Work orders for one agent (`WorkOrder`), stream [`WORK_STREAM`], work-queue retention.
pub fn work(agent_id: &str) -> String {
    format!("{WORK_PREFIX}{agent_id}")
}

/// What [`work`] puts before the agent id.
pub const WORK_PREFIX: &str = "pf.work.";

/// Cancel and abort orders (`Control`), stream [`CTL_STREAM`]: never queued behind work.
pub fn control(agent_id: &str) -> String {
    format!("pf.ctl.{agent_id}")
}

/// Run milestones of one agent (`AgentEvent`), stream [`EVT_STREAM`].
pub fn run_events(agent_id: &str) -> String {
    format!("pf.evt.{agent_id}.run")
}

/// Inventory reports of one agent (`Inventory`), stream [`EVT_STREAM`].
pub fn inventory(agent_id: &str) -> String {
    format!("pf.evt.{agent_id}.inventory")
}

/// Reports on operators' phone actions of one agent (`PhoneOpReport`), stream [`EVT_STREAM`].
pub fn phone_ops(agent_id: &str) -> String {
    format!("pf.evt.{agent_id}.ops")
}

/// Watch requests for one agent's phones (`Watch`), core NATS: a console viewer is looking at
/// a phone's screen. Not a stream: a watch is worth nothing once late.
pub fn screen_watch(agent_id: &str) -> String {
    format!("pf.watch.{agent_id}")
}

/// Frames of one phone's screen (`ScreenFrame`), core NATS, published by its agent while a
/// watch is alive. Never stored.
pub fn screen(agent_id: &str, phone_id: &str) -> String {
    format!("pf.screen.{agent_id}.{phone_id}")
}

pub const WORK_STREAM: &str = "PF_WORK";
pub const WORK_SUBJECTS: &str = "pf.work.*";
pub const CTL_STREAM: &str = "PF_CTL";
pub const CTL_SUBJECTS: &str = "pf.ctl.*";
pub const EVT_STREAM: &str = "PF_EVT";
pub const EVT_SUBJECTS: &str = "pf.evt.>";
/// The coordinators' shared durable consumer on [`EVT_STREAM`].
pub const COORDINATOR_CONSUMER: &str = "coordinator";
/// KV bucket of agent presence (`Presence`, key = agent id).
pub const AGENTS_BUCKET: &str = "pf_agents";
/// KV bucket of flow packs (key = pack name, value = TOML).
pub const FLOWS_BUCKET: &str = "pf_flows";
/// Object store of evidence (screenshots, UI dumps).
pub const EVIDENCE_BUCKET: &str = "pf_evidence";

/// The durable pull consumer of one agent on its work (or control) stream.
pub fn agent_consumer(agent_id: &str) -> String {
    format!("agent-{agent_id}")
}

/// Flow-pack reports of one agent (`PackReport`: what it runs, what it refused), stream
/// [`EVT_STREAM`].
pub fn pack_reports(agent_id: &str) -> String {
    format!("pf.evt.{agent_id}.packs")
}

/// The object store of one agent's evidence: each agent writes only its own bucket (an object
/// store's subjects carry object names base64-encoded, so a name prefix cannot be granted).
/// Object names inside are `<agent_id>/<queue_item_id>/<attempt>/<name>`.
pub fn evidence_bucket(agent_id: &str) -> String {
    format!("{EVIDENCE_BUCKET}_{agent_id}")
}

/// Whether `s` can name a bucket (and so an enrolled agent): ASCII letters, digits, `-` and
/// `_`, 1 to 64 bytes. Stricter than a subject token, because bucket and stream names are.
pub fn is_bucket_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The consumer an agent creates on the flow-pack bucket's stream to watch it (named after the
/// agent, so it may create and delete that one and no other).
pub fn flows_watcher(agent_id: &str) -> String {
    format!("flows-{agent_id}")
}

/// The stream behind a KV bucket.
pub fn kv_stream(bucket: &str) -> String {
    format!("KV_{bucket}")
}

/// The stream behind an object store bucket.
pub fn object_stream(bucket: &str) -> String {
    format!("OBJ_{bucket}")
}
