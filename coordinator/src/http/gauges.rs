//! The operators' gauges on `/metrics`, in Prometheus text format, from one [`Snapshot`] read
//! at the scrape (`db::gauges`). The counters and histograms of the `metrics` recorder come
//! before them in the same answer. `deploy/prometheus/alerts.yml` and the Grafana dashboard in
//! `deploy/grafana/` read these names; a test checks that every name they use is served.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::console::fleet::{ATTENTION, PHONE_STATES, attention};
use crate::db::gauges::{OPEN_STATES, Snapshot};
use crate::db::phones::PhoneRow;

/// A label value with `\`, `"` and newlines escaped.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One agent's phones: by [`PHONE_STATES`], and by [`ATTENTION`] (same positions).
#[derive(Default)]
struct Tally {
    states: [u64; PHONE_STATES.len()],
    why: [u64; ATTENTION.len()],
}

const GAUGES_UP_HELP: &str =
    "1 if the gauges below were read from Postgres at this scrape, 0 if the read failed.";

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} gauge");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", esc(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    /// A family of one sample without labels.
    fn single(&mut self, name: &str, help: &str, value: f64) {
        self.family(name, help);
        self.sample(name, &[], value);
    }

    /// A family with one sample per phone whose online agent reports `value`.
    fn per_phone(
        &mut self,
        name: &str,
        help: &str,
        phones: &[PhoneRow],
        value: fn(&PhoneRow) -> Option<f64>,
    ) {
        self.family(name, help);
        for p in phones {
            if let (Some(v), Some(agent), true) = (value(p), &p.agent_id, p.agent_online) {
                self.sample(name, &[("agent_id", agent), ("phone_id", &p.phone_id)], v);
            }
        }
    }
}

/// The gauges of `snap`.
pub fn render(snap: &Snapshot) -> String {
    let mut o = Out(String::with_capacity(256 + snap.phones.len() * 200));
    o.single("phonefarm_gauges_up", GAUGES_UP_HELP, 1.0);

    o.family(
        "phonefarm_agent_up",
        "1 while the agent is online (its presence heartbeats arrive), 0 once it is marked offline.",
    );
    for a in &snap.agents {
        o.sample(
            "phonefarm_agent_up",
            &[("agent_id", &a.agent_id)],
            f64::from(u8::from(a.online)),
        );
    }
    o.family("phonefarm_agents", "Agents by state.");
    let online = snap.agents.iter().filter(|a| a.online).count();
    o.sample("phonefarm_agents", &[("state", "online")], online as f64);
    o.sample(
        "phonefarm_agents",
        &[("state", "offline")],
        (snap.agents.len() - online) as f64,
    );

    // Per agent (every known agent, and the agent a phone names), zero-filled.
    let mut by_agent: BTreeMap<&str, Tally> = BTreeMap::new();
    for a in &snap.agents {
        by_agent.entry(a.agent_id.as_str()).or_default();
    }
    for p in &snap.phones {
        let t = by_agent
            .entry(p.agent_id.as_deref().unwrap_or(""))
            .or_default();
        if let Some(i) = PHONE_STATES.iter().position(|s| *s == p.effective_state()) {
            t.states[i] += 1;
        }
        for w in attention(p) {
            if let Some(i) = ATTENTION.iter().position(|r| *r == w) {
                t.why[i] += 1;
            }
        }
    }
    o.family(
        "phonefarm_phones",
        "Phones by agent and state (offline with their agent, busy while they run an item).",
    );
    for (agent, t) in &by_agent {
        for (s, n) in PHONE_STATES.iter().zip(t.states) {
            o.sample(
                "phonefarm_phones",
                &[("agent_id", agent), ("state", s)],
                n as f64,
            );
        }
    }
    o.family(
        "phonefarm_phones_needing_attention",
        "Phones by agent and what needs an operator (one phone may count under several reasons).",
    );
    for (agent, t) in &by_agent {
        for (r, n) in ATTENTION.iter().zip(t.why) {
            let reason = r.replace(' ', "_");
            o.sample(
                "phonefarm_phones_needing_attention",
                &[("agent_id", agent), ("reason", &reason)],
                n as f64,
            );
        }
    }
    o.per_phone(
        "phonefarm_phone_temperature_celsius",
        "Battery temperature of each phone its online agent reports.",
        &snap.phones,
        |p| p.temperature_c.map(f64::from),
    );
    o.per_phone(
        "phonefarm_phone_battery_percent",
        "Battery level of each phone its online agent reports.",
        &snap.phones,
        |p| p.battery_level.map(f64::from),
    );

    let depth = |state: &str| {
        snap.queue
            .iter()
            .find(|(s, _)| s == state)
            .map_or(0, |(_, n)| *n)
    };
    o.single(
        "phonefarm_runs_executing",
        "Queue items running on a phone now (EXECUTING).",
        depth("EXECUTING") as f64,
    );
    o.family(
        "phonefarm_queue_items",
        "Queue items waiting or running, by state.",
    );
    for s in OPEN_STATES {
        o.sample("phonefarm_queue_items", &[("state", s)], depth(s) as f64);
    }
    o.single(
        "phonefarm_queue_oldest_age_seconds",
        "How long the oldest item that could run now (QUEUED, or RETRYABLE and due) has waited since it became due; 0 when none waits.",
        snap.oldest_queued_seconds,
    );
    o.single(
        "phonefarm_callback_backlog",
        "Callback deliveries not delivered yet (pending, including those waiting for a retry).",
        snap.callback_backlog as f64,
    );
    o.single(
        "phonefarm_callback_oldest_pending_age_seconds",
        "Age of the oldest pending callback delivery; 0 when none is pending.",
        snap.oldest_callback_seconds,
    );
    o.family(
        "phonefarm_dead_letters",
        "Dead letters: queue items out of attempts (DEAD_LETTER) and callback deliveries given up on.",
    );
    o.sample(
        "phonefarm_dead_letters",
        &[("kind", "queue_item")],
        depth("DEAD_LETTER") as f64,
    );
    o.sample(
        "phonefarm_dead_letters",
        &[("kind", "callback")],
        snap.failed_callbacks as f64,
    );
    o.0
}

/// What is served when the read failed: only `phonefarm_gauges_up 0`.
pub fn unavailable() -> String {
    let mut o = Out(String::new());
    o.single("phonefarm_gauges_up", GAUGES_UP_HELP, 0.0);
    o.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut o = Out(String::new());
        o.sample("m", &[("a", "x\"y\\z\nw")], 1.5);
        assert_eq!(o.0, "m{a=\"x\\\"y\\\\z\\nw\"} 1.5\n");
    }

    #[test]
    fn an_empty_farm_still_serves_every_family() {
        let snap = Snapshot {
            agents: vec![],
            phones: vec![],
            queue: vec![],
            oldest_queued_seconds: 0.0,
            callback_backlog: 0,
            oldest_callback_seconds: 0.0,
            failed_callbacks: 0,
        };
        let text = render(&snap);
        for family in [
            "phonefarm_agents",
            "phonefarm_runs_executing",
            "phonefarm_queue_items",
            "phonefarm_queue_oldest_age_seconds",
            "phonefarm_callback_backlog",
            "phonefarm_callback_oldest_pending_age_seconds",
            "phonefarm_dead_letters",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(&format!("{family} "))
                    || l.starts_with(&format!("{family}{{"))),
                "{family} missing:\n{text}"
            );
        }
        assert!(text.contains("phonefarm_queue_items{state=\"PLANNED\"} 0\n"));
    }
}
