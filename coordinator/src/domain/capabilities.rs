//! The capability registry: which capability may run in which mode and with which routing.

use serde::{Deserialize, Serialize};

/// One row of the registry (`GET /capabilities`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CapabilityRule {
    pub name: String,
    pub manual: bool,
    pub unattended: bool,
    pub live_verified: bool,
    pub routings: Vec<String>,
}

pub const CAPABILITIES: [&str; 3] = ["keyword_warmup", "fyp_warmup", "maintenance"];
pub const ROUTINGS: [&str; 3] = ["direct", "queue", "group"];

/// Problems with running `rule` in `mode` with `routing`, as contract strings.
pub fn check(rule: &CapabilityRule, mode: &str, routing: Option<&str>) -> Vec<String> {
    let mut errors = Vec::new();
    match mode {
        "unattended" if !(rule.unattended && rule.live_verified) => {
            errors.push(format!("capability_not_live_verified:{}", rule.name));
        }
        "manual" if !rule.manual => {
            errors.push(format!("capability_not_permitted:{}:manual", rule.name));
        }
        _ => {}
    }
    if let Some(r) = routing
        && !rule.routings.iter().any(|x| x == r)
    {
        errors.push(format!("routing_not_supported:{}:{r}", rule.name));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str, unattended: bool, live: bool, routings: &[&str]) -> CapabilityRule {
        CapabilityRule {
            name: name.into(),
            manual: true,
            unattended,
            live_verified: live,
            routings: routings.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn fyp_warmup_unattended_is_refused_with_the_documented_string() {
        let r = rule("fyp_warmup", false, false, &["direct", "queue", "group"]);
        assert_eq!(
            check(&r, "unattended", Some("queue")),
            vec!["capability_not_live_verified:fyp_warmup"]
        );
        assert!(check(&r, "manual", Some("queue")).is_empty());
    }

    #[test]
    fn maintenance_group_is_refused() {
        let r = rule("maintenance", true, true, &["direct", "queue"]);
        assert_eq!(
            check(&r, "unattended", Some("group")),
            vec!["routing_not_supported:maintenance:group"]
        );
    }

    #[test]
    fn permitted_but_not_live_verified_is_refused_unattended() {
        let r = rule("keyword_warmup", true, false, &["queue"]);
        assert_eq!(check(&r, "unattended", None).len(), 1);
    }
}
