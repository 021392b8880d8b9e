//! Routing resolution: which (phone, account) pairs a target fans out into (`direct`, `queue`,
//! `group`; the rules are in the OpenAPI description of `POST /capability-requests/enqueue`).

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::Serialize;

/// A validated `target` object. Reserved fields are stored and echoed, not used for routing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Target {
    pub routing: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_group: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub phone_ids: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub account_ids: Vec<String>,
}

impl Target {
    /// Every account id the target names.
    pub fn account_refs(&self) -> Vec<String> {
        self.account_id
            .iter()
            .chain(&self.account_ids)
            .cloned()
            .collect()
    }

    /// Every phone id the target names.
    pub fn phone_refs(&self) -> Vec<String> {
        self.phone_id
            .iter()
            .chain(&self.phone_ids)
            .cloned()
            .collect()
    }
}

/// What the registry knows about one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountInfo {
    pub phone_id: Option<String>,
    pub active: bool,
}

/// The slice of the account/phone registry a target refers to.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    pub accounts: HashMap<String, AccountInfo>,
    pub phones: HashSet<String>,
    /// Active accounts bound to each phone named by the target.
    pub phone_accounts: HashMap<String, Vec<String>>,
}

/// One queue item to create.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Planned {
    /// Pinned phone (direct and group); `None` for queue routing, resolved when claimed.
    pub phone_id: Option<String>,
    pub account_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoutingError {
    /// 404: unknown or inactive ids.
    NotFound(Vec<String>),
    /// 422: the ids exist but do not fit together.
    Invalid(Vec<String>),
}

pub const MAX_GROUP_TARGETS: usize = 100;

fn active_account<'a>(
    dir: &'a Directory,
    id: &str,
    missing: &mut Vec<String>,
) -> Option<&'a AccountInfo> {
    match dir.accounts.get(id) {
        Some(a) if a.active => Some(a),
        _ => {
            missing.push(format!("account_not_found:{id}"));
            None
        }
    }
}

pub fn resolve(target: &Target, dir: &Directory) -> Result<Vec<Planned>, RoutingError> {
    let mut missing = Vec::new();
    let mut invalid = Vec::new();
    let mut planned = BTreeSet::new();
    match target.routing.as_str() {
        "direct" => {
            let (Some(phone), Some(account)) = (&target.phone_id, &target.account_id) else {
                return Err(RoutingError::Invalid(vec![
                    "missing_field:target.phone_id".into(),
                ]));
            };
            if !dir.phones.contains(phone) {
                missing.push(format!("phone_not_found:{phone}"));
            }
            if let Some(a) = active_account(dir, account, &mut missing)
                && a.phone_id.as_deref() != Some(phone.as_str())
            {
                invalid.push(format!("account_not_on_phone:{account}"));
            }
            planned.insert(Planned {
                phone_id: Some(phone.clone()),
                account_id: account.clone(),
            });
        }
        "queue" => {
            let Some(account) = &target.account_id else {
                return Err(RoutingError::Invalid(vec![
                    "missing_field:target.account_id".into(),
                ]));
            };
            if let Some(a) = active_account(dir, account, &mut missing)
                && a.phone_id.is_none()
            {
                invalid.push(format!("account_has_no_phone:{account}"));
            }
            planned.insert(Planned {
                phone_id: None,
                account_id: account.clone(),
            });
        }
        "group" => {
            for account in &target.account_ids {
                if let Some(a) = active_account(dir, account, &mut missing) {
                    match &a.phone_id {
                        Some(p) => {
                            planned.insert(Planned {
                                phone_id: Some(p.clone()),
                                account_id: account.clone(),
                            });
                        }
                        None => invalid.push(format!("account_has_no_phone:{account}")),
                    }
                }
            }
            for phone in &target.phone_ids {
                if !dir.phones.contains(phone) {
                    missing.push(format!("phone_not_found:{phone}"));
                    continue;
                }
                match dir.phone_accounts.get(phone).map(Vec::as_slice) {
                    Some([one]) => {
                        planned.insert(Planned {
                            phone_id: Some(phone.clone()),
                            account_id: one.clone(),
                        });
                    }
                    Some([_, _, ..]) => invalid.push(format!("ambiguous_phone_account:{phone}")),
                    _ => invalid.push(format!("phone_has_no_account:{phone}")),
                }
            }
        }
        other => invalid.push(format!("invalid_value:target.routing:{other}")),
    }
    missing.dedup();
    invalid.dedup();
    if !missing.is_empty() {
        return Err(RoutingError::NotFound(missing));
    }
    if !invalid.is_empty() {
        return Err(RoutingError::Invalid(invalid));
    }
    Ok(planned.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> Directory {
        let mut d = Directory::default();
        for (acc, phone, active) in [
            ("a1", Some("p1"), true),
            ("a2", Some("p2"), true),
            ("a3", Some("p3"), true),
            ("a3b", Some("p3"), true),
            ("a4", None, true),
            ("gone", Some("p1"), false),
        ] {
            d.accounts.insert(
                acc.into(),
                AccountInfo {
                    phone_id: phone.map(Into::into),
                    active,
                },
            );
        }
        for p in ["p1", "p2", "p3", "p4"] {
            d.phones.insert(p.into());
        }
        d.phone_accounts.insert("p1".into(), vec!["a1".into()]);
        d.phone_accounts.insert("p2".into(), vec!["a2".into()]);
        d.phone_accounts
            .insert("p3".into(), vec!["a3".into(), "a3b".into()]);
        d
    }

    fn t(routing: &str) -> Target {
        Target {
            routing: routing.into(),
            ..Target::default()
        }
    }

    #[test]
    fn direct_pins_phone_and_checks_binding() {
        let mut target = t("direct");
        target.phone_id = Some("p1".into());
        target.account_id = Some("a1".into());
        assert_eq!(
            resolve(&target, &dir()).unwrap(),
            vec![Planned {
                phone_id: Some("p1".into()),
                account_id: "a1".into()
            }]
        );
        target.account_id = Some("a2".into());
        assert_eq!(
            resolve(&target, &dir()),
            Err(RoutingError::Invalid(vec![
                "account_not_on_phone:a2".into()
            ]))
        );
        target.account_id = Some("gone".into());
        target.phone_id = Some("p9".into());
        assert_eq!(
            resolve(&target, &dir()),
            Err(RoutingError::NotFound(vec![
                "phone_not_found:p9".into(),
                "account_not_found:gone".into()
            ]))
        );
    }

    #[test]
    fn queue_resolves_the_phone_later() {
        let mut target = t("queue");
        target.account_id = Some("a2".into());
        assert_eq!(
            resolve(&target, &dir()).unwrap(),
            vec![Planned {
                phone_id: None,
                account_id: "a2".into()
            }]
        );
        target.account_id = Some("a4".into());
        assert!(matches!(
            resolve(&target, &dir()),
            Err(RoutingError::Invalid(_))
        ));
    }

    #[test]
    fn group_fans_out_and_collapses_duplicates() {
        let mut target = t("group");
        target.account_ids = vec!["a1".into(), "a2".into(), "a1".into()];
        target.phone_ids = vec!["p1".into(), "p2".into()];
        let planned = resolve(&target, &dir()).unwrap();
        assert_eq!(planned.len(), 2);
        assert!(planned.iter().all(|p| p.phone_id.is_some()));
    }

    #[test]
    fn group_reports_ambiguous_and_accountless_phones() {
        let mut target = t("group");
        target.phone_ids = vec!["p3".into(), "p4".into()];
        assert_eq!(
            resolve(&target, &dir()),
            Err(RoutingError::Invalid(vec![
                "ambiguous_phone_account:p3".into(),
                "phone_has_no_account:p4".into()
            ]))
        );
    }
}
