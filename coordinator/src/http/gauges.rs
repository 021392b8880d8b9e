//! The operators' gauges on `/metrics`, in Prometheus text format, from one [`Snapshot`] read
//! at the scrape (`db::gauges`). The counters and histograms of the `metrics` recorder come
//! before them in the same answer. `deploy/prometheus/alerts.yml` and the Grafana dashboard in
//! `deploy/grafana/` read these names; a test checks that every name they use is served.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::console::fleet::attention;
use crate::db::gauges::{OPEN_STATES, Snapshot};

/// The phone states a phone is counted in (`PhoneRow::effective_state`).
pub const PHONE_STATES: [&str; 5] = [
    "online",
    "busy",
    "offline",
    "unauthorized",
    "needs_attention",
];

/// Why a phone needs an operator, as label values (`console::fleet::attention`).
pub const ATTENTION: [&str; 6] = [
    "offline",
    "unauthorized",
    "needs_attention",
    "overheating",
    "low_battery",
    "disabled",
];

/// A label value with `\`, `"` and newlines escaped.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One agent's phones: by state, and by what needs an operator.
type Tally<'a> = (BTreeMap<&'a str, u64>, BTreeMap<String, u64>);

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
}

/// The gauges of `snap`.
pub fn render(snap: &Snapshot) -> String {
    let mut o = Out(String::with_capacity(256 + snap.phones.len() * 200));
    o.family(
        "phonefarm_gauges_up",
        "1 if the gauges below were read from Postgres at this scrape, 0 if the read failed.",
    );
    o.sample("phonefarm_gauges_up", &[], 1.0);

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
    let mut by_agent: BTreeMap<&str, Tally<'_>> = BTreeMap::new();
    for a in &snap.agents {
        by_agent.entry(a.agent_id.as_str()).or_default();
    }
    for p in &snap.phones {
        let (states, why) = by_agent
            .entry(p.agent_id.as_deref().unwrap_or(""))
            .or_default();
        *states.entry(p.effective_state()).or_default() += 1;
        for w in attention(p) {
            *why.entry(w.replace(' ', "_")).or_default() += 1;
        }
    }
    o.family(
        "phonefarm_phones",
        "Phones by agent and state (offline with their agent, busy while they run an item).",
    );
    for (agent, (states, _)) in &by_agent {
        for s in PHONE_STATES {
            let n = states.get(s).copied().unwrap_or(0);
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
    for (agent, (_, why)) in &by_agent {
        for r in ATTENTION {
            let n = why.get(r).copied().unwrap_or(0);
            o.sample(
                "phonefarm_phones_needing_attention",
                &[("agent_id", agent), ("reason", r)],
                n as f64,
            );
        }
    }
    o.family(
        "phonefarm_phone_temperature_celsius",
        "Battery temperature of each phone its online agent reports.",
    );
    for p in &snap.phones {
        if let (Some(t), Some(agent), true) = (p.temperature_c, &p.agent_id, p.agent_online) {
            o.sample(
                "phonefarm_phone_temperature_celsius",
                &[("agent_id", agent), ("phone_id", &p.phone_id)],
                f64::from(t),
            );
        }
    }
    o.family(
        "phonefarm_phone_battery_percent",
        "Battery level of each phone its online agent reports.",
    );
    for p in &snap.phones {
        if let (Some(b), Some(agent), true) = (p.battery_level, &p.agent_id, p.agent_online) {
            o.sample(
                "phonefarm_phone_battery_percent",
                &[("agent_id", agent), ("phone_id", &p.phone_id)],
                f64::from(b),
            );
        }
    }

    let depth = |state: &str| {
        snap.queue
            .iter()
            .find(|(s, _)| s == state)
            .map_or(0, |(_, n)| *n)
    };
    o.family(
        "phonefarm_runs_executing",
        "Queue items running on a phone now (EXECUTING).",
    );
    o.sample("phonefarm_runs_executing", &[], depth("EXECUTING") as f64);
    o.family(
        "phonefarm_queue_items",
        "Queue items waiting or running, by state.",
    );
    for s in OPEN_STATES {
        o.sample("phonefarm_queue_items", &[("state", s)], depth(s) as f64);
    }
    o.family(
        "phonefarm_queue_oldest_age_seconds",
        "How long the oldest item that could run now (QUEUED, or RETRYABLE and due) has waited since it became due; 0 when none waits.",
    );
    o.sample(
        "phonefarm_queue_oldest_age_seconds",
        &[],
        snap.oldest_queued_seconds,
    );
    o.family(
        "phonefarm_callback_backlog",
        "Callback deliveries not delivered yet (pending, including those waiting for a retry).",
    );
    o.sample(
        "phonefarm_callback_backlog",
        &[],
        snap.callback_backlog as f64,
    );
    o.family(
        "phonefarm_callback_oldest_pending_age_seconds",
        "Age of the oldest pending callback delivery; 0 when none is pending.",
    );
    o.sample(
        "phonefarm_callback_oldest_pending_age_seconds",
        &[],
        snap.oldest_callback_seconds,
    );
    o.family(
        "phonefarm_dead_letters",
        "Dead letters: queue items out of attempts (DEAD_LETTER) and callback deliveries given up on.",
    );
    o.sample(
        "phonefarm_dead_letters",
        &[("kind", "queue_item")],
        snap.dead_lettered_items as f64,
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
    o.family(
        "phonefarm_gauges_up",
        "1 if the gauges below were read from Postgres at this scrape, 0 if the read failed.",
    );
    o.sample("phonefarm_gauges_up", &[], 0.0);
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
            dead_lettered_items: 0,
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
