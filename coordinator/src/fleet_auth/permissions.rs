//! What an enrolled agent may do on NATS (least privilege), written into its user JWT.
//!
//! Publish (requests are publishes too):
//! - its own events, inventory and pack reports: `pf.evt.<id>.>`; its presence key
//!   `$KV.pf_agents.<id>` (and `STREAM.INFO` of that bucket, which opening it asks);
//! - its own work and control consumers only: `CONSUMER.INFO` and `MSG.NEXT` of `agent-<id>` on
//!   `PF_WORK` and `PF_CTL`, and acks of their messages (`$JS.ACK.<stream>.agent-<id>.>`);
//! - the flow packs: `STREAM.INFO` of `KV_pf_flows`, and create, pull from and delete its own
//!   watcher consumer `flows-<id>` on it (another agent's watcher is out of reach);
//! - its own evidence bucket `pf_evidence_<id>`: write objects (`$O.pf_evidence_<id>.>`), look
//!   up and purge what it replaces. Nothing of another agent's bucket, nor of the legacy shared
//!   `pf_evidence`.
//!
//! - its own phones' screen frames for the console's live view: `pf.screen.<id>.>` (core
//!   NATS).
//!
//! Subscribe: its inbox prefix `_INBOX_<id>.>` (the agent connects with that custom inbox
//! prefix), where the replies to all of the above arrive, and its own screen watches
//! `pf.watch.<id>`.

use phonefarm_shared::subjects;

use super::jwt::Permission;

/// The inbox prefix an agent connects with.
pub fn inbox_prefix(agent_id: &str) -> String {
    format!("_INBOX_{agent_id}")
}

/// Publish permissions of agent `id`.
pub fn agent_publish(id: &str) -> Permission {
    let consumer = subjects::agent_consumer(id);
    let agents = subjects::kv_stream(subjects::AGENTS_BUCKET);
    let flows = subjects::kv_stream(subjects::FLOWS_BUCKET);
    let watcher = subjects::flows_watcher(id);
    let evidence = subjects::evidence_bucket(id);
    let evidence_stream = subjects::object_stream(&evidence);
    let mut allow = vec![
        format!("pf.evt.{id}.>"),
        format!("$KV.{}.{id}", subjects::AGENTS_BUCKET),
        format!("$JS.API.STREAM.INFO.{agents}"),
    ];
    for stream in [subjects::WORK_STREAM, subjects::CTL_STREAM] {
        allow.push(format!("$JS.API.CONSUMER.INFO.{stream}.{consumer}"));
        allow.push(format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"));
        allow.push(format!("$JS.ACK.{stream}.{consumer}.>"));
    }
    allow.extend([
        format!("$JS.API.STREAM.INFO.{flows}"),
        format!("$JS.API.CONSUMER.CREATE.{flows}.{watcher}"),
        format!("$JS.API.CONSUMER.INFO.{flows}.{watcher}"),
        format!("$JS.API.CONSUMER.MSG.NEXT.{flows}.{watcher}"),
        format!("$JS.API.CONSUMER.DELETE.{flows}.{watcher}"),
        format!("$JS.API.STREAM.INFO.{evidence_stream}"),
        format!("$JS.API.STREAM.MSG.GET.{evidence_stream}"),
        format!("$JS.API.DIRECT.GET.{evidence_stream}.>"),
        format!("$JS.API.STREAM.PURGE.{evidence_stream}"),
        format!("$O.{evidence}.>"),
        format!("pf.screen.{id}.>"),
    ]);
    Permission {
        allow,
        deny: Vec::new(),
    }
}

/// Subscribe permissions of agent `id`.
pub fn agent_subscribe(id: &str) -> Permission {
    Permission {
        allow: vec![
            format!("{}.>", inbox_prefix(id)),
            subjects::screen_watch(id),
        ],
        deny: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subject_names_the_agent_or_a_shared_read() {
        let p = agent_publish("rack-07");
        assert!(p.allow.contains(&"pf.evt.rack-07.>".to_string()));
        assert!(p.allow.contains(&"$O.pf_evidence_rack-07.>".to_string()));
        for s in &p.allow {
            let shared_read =
                s == "$JS.API.STREAM.INFO.KV_pf_agents" || s == "$JS.API.STREAM.INFO.KV_pf_flows";
            assert!(
                s.contains("rack-07") || shared_read,
                "{s} is not scoped to the agent"
            );
            assert!(
                !s.contains("DELETE") || s.ends_with(".flows-rack-07"),
                "{s} deletes more than the agent's own watcher"
            );
        }
        assert_eq!(
            agent_subscribe("rack-07").allow,
            ["_INBOX_rack-07.>", "pf.watch.rack-07"]
        );
    }
}
