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
