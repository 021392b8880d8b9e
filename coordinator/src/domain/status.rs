//! Queue-item states, their public mapping, and how a process's status derives from its items.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use time::OffsetDateTime;

/// Internal state of one queue item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ItemState {
    Queued,
    Scheduled,
    Planned,
    Claimed,
    Executing,
    Retryable,
    Done,
    Partial,
    DeadLetter,
    Cancelled,
}

impl ItemState {
    pub const ALL: [ItemState; 10] = [
        ItemState::Queued,
        ItemState::Scheduled,
        ItemState::Planned,
        ItemState::Claimed,
        ItemState::Executing,
        ItemState::Retryable,
        ItemState::Done,
        ItemState::Partial,
        ItemState::DeadLetter,
        ItemState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ItemState::Queued => "QUEUED",
            ItemState::Scheduled => "SCHEDULED",
            ItemState::Planned => "PLANNED",
            ItemState::Claimed => "CLAIMED",
            ItemState::Executing => "EXECUTING",
            ItemState::Retryable => "RETRYABLE",
            ItemState::Done => "DONE",
            ItemState::Partial => "PARTIAL",
            ItemState::DeadLetter => "DEAD_LETTER",
            ItemState::Cancelled => "CANCELLED",
        }
    }

    pub fn public(self) -> Status {
        match self {
            ItemState::Queued | ItemState::Scheduled | ItemState::Planned | ItemState::Claimed => {
                Status::Queued
            }
            ItemState::Executing => Status::Executing,
            ItemState::Retryable => Status::Retrying,
            ItemState::Done => Status::Completed,
            ItemState::Partial | ItemState::DeadLetter => Status::FailedTerminal,
            ItemState::Cancelled => Status::Cancelled,
        }
    }

    pub fn is_terminal(self) -> bool {
        self.public().is_terminal()
    }

    /// Items a cancel stops at once, without asking an agent.
    pub fn is_pending(self) -> bool {
        matches!(
            self,
            ItemState::Queued | ItemState::Scheduled | ItemState::Planned | ItemState::Retryable
        )
    }
}

impl fmt::Display for ItemState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ItemState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ItemState::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| format!("unknown queue item state {s:?}"))
    }
}

/// Public process status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Queued,
    Executing,
    Retrying,
    Completed,
    FailedTerminal,
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Executing => "executing",
            Status::Retrying => "retrying",
            Status::Completed => "completed",
            Status::FailedTerminal => "failed_terminal",
            Status::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        [
            Status::Queued,
            Status::Executing,
            Status::Retrying,
            Status::Completed,
            Status::FailedTerminal,
            Status::Cancelled,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Status::Completed | Status::FailedTerminal | Status::Cancelled
        )
    }
}

/// A process's status from its items (any executing → executing; else any retrying →
/// retrying; else any queued-like → queued; all terminal: the outcome). `None` for a process
/// without items.
pub fn derive(items: &[ItemState], cancel_requested: bool) -> Option<Status> {
    if items.is_empty() {
        return None;
    }
    let any = |s: Status| items.iter().any(|i| i.public() == s);
    Some(if any(Status::Executing) {
        Status::Executing
    } else if any(Status::Retrying) {
        Status::Retrying
    } else if any(Status::Queued) {
        Status::Queued
    } else if items.iter().all(|i| *i == ItemState::Done) {
        Status::Completed
    } else if cancel_requested && !any(Status::FailedTerminal) {
        Status::Cancelled
    } else {
        Status::FailedTerminal
    })
}

/// The next stored status: a terminal status is final, whatever the items say later.
pub fn next(current: Status, items: &[ItemState], cancel_requested: bool) -> Status {
    if current.is_terminal() {
        return current;
    }
    derive(items, cancel_requested).unwrap_or(current)
}

/// `partial_progress`: `{}` for a single item, counts for several.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Progress {
    pub total: usize,
    pub queued: usize,
    pub executing: usize,
    pub retrying: usize,
    pub completed: usize,
    pub failed: usize,
    pub cancelled: usize,
}

pub fn progress(items: &[ItemState]) -> serde_json::Value {
    if items.len() <= 1 {
        return serde_json::json!({});
    }
    let mut p = Progress {
        total: items.len(),
        ..Progress::default()
    };
    for i in items {
        match i.public() {
            Status::Queued => p.queued += 1,
            Status::Executing => p.executing += 1,
            Status::Retrying => p.retrying += 1,
            Status::Completed => p.completed += 1,
            Status::FailedTerminal => p.failed += 1,
            Status::Cancelled => p.cancelled += 1,
        }
    }
    serde_json::to_value(p).unwrap_or_default()
}

/// Milestone timestamps never move backwards: a "first time" milestone keeps its first value.
pub fn first(stored: Option<OffsetDateTime>, now: OffsetDateTime) -> OffsetDateTime {
    stored.unwrap_or(now)
}

/// A "latest" milestone (retrying_at) only moves forward.
pub fn latest(stored: Option<OffsetDateTime>, now: OffsetDateTime) -> OffsetDateTime {
    match stored {
        Some(s) if s > now => s,
        _ => now,
    }
}

#[cfg(test)]
mod tests {
    use super::ItemState::*;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn mapping_follows_the_contract() {
        for s in [Queued, Scheduled, Planned, Claimed] {
            assert_eq!(s.public(), Status::Queued);
        }
        assert_eq!(Executing.public(), Status::Executing);
        assert_eq!(Retryable.public(), Status::Retrying);
        assert_eq!(Done.public(), Status::Completed);
        assert_eq!(Partial.public(), Status::FailedTerminal);
        assert_eq!(DeadLetter.public(), Status::FailedTerminal);
        assert_eq!(Cancelled.public(), Status::Cancelled);
        for s in ItemState::ALL {
            assert_eq!(s.as_str().parse::<ItemState>(), Ok(s));
            // The JSON form (responses, the OpenAPI enum) is the stored form.
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            let public = s.public();
            assert_eq!(serde_json::to_value(public).unwrap(), public.as_str());
        }
    }

    #[test]
    fn derivation_examples() {
        assert_eq!(derive(&[], false), None);
        assert_eq!(
            derive(&[Done, Executing, Queued], false),
            Some(Status::Executing)
        );
        assert_eq!(
            derive(&[Done, Retryable, Queued], false),
            Some(Status::Retrying)
        );
        assert_eq!(derive(&[Done, Claimed], false), Some(Status::Queued));
        assert_eq!(derive(&[Done, Done], false), Some(Status::Completed));
        assert_eq!(derive(&[Done, Cancelled], true), Some(Status::Cancelled));
        assert_eq!(
            derive(&[Done, Cancelled], false),
            Some(Status::FailedTerminal)
        );
        assert_eq!(
            derive(&[DeadLetter, Cancelled], true),
            Some(Status::FailedTerminal)
        );
        assert_eq!(
            derive(&[Done, DeadLetter], false),
            Some(Status::FailedTerminal)
        );
    }

    #[test]
    fn terminal_is_final() {
        assert_eq!(
            next(Status::Cancelled, &[Executing], true),
            Status::Cancelled
        );
        assert_eq!(next(Status::Queued, &[Executing], false), Status::Executing);
    }

    #[test]
    fn progress_counts_several_items_only() {
        assert_eq!(progress(&[Done]), serde_json::json!({}));
        assert_eq!(
            progress(&[Done, DeadLetter, Queued]),
            serde_json::json!({"total": 3, "queued": 1, "executing": 0, "retrying": 0,
                               "completed": 1, "failed": 1, "cancelled": 0})
        );
    }

    fn any_state() -> impl Strategy<Value = ItemState> {
        proptest::sample::select(ItemState::ALL.to_vec())
    }

    proptest! {
        /// The derived status is always one some item supports, following the precedence rules.
        #[test]
        fn derivation_properties(items in proptest::collection::vec(any_state(), 1..12), cancel in any::<bool>()) {
            let s = derive(&items, cancel).unwrap();
            let publics: Vec<Status> = items.iter().map(|i| i.public()).collect();
            let has = |x: Status| publics.contains(&x);
            if has(Status::Executing) {
                prop_assert_eq!(s, Status::Executing);
            } else if has(Status::Retrying) {
                prop_assert_eq!(s, Status::Retrying);
            } else if has(Status::Queued) {
                prop_assert_eq!(s, Status::Queued);
            } else {
                // All items terminal: so is the process.
                prop_assert!(s.is_terminal());
                prop_assert_eq!(s == Status::Completed, publics.iter().all(|p| *p == Status::Completed));
                if s == Status::Cancelled {
                    prop_assert!(cancel);
                    prop_assert!(!has(Status::FailedTerminal));
                }
                if has(Status::FailedTerminal) {
                    prop_assert_eq!(s, Status::FailedTerminal);
                }
            }
            // Progress counts add up.
            let p = progress(&items);
            if items.len() > 1 {
                let sum: u64 = ["queued","executing","retrying","completed","failed","cancelled"]
                    .iter().map(|k| p[*k].as_u64().unwrap()).sum();
                prop_assert_eq!(sum, items.len() as u64);
            }
        }

        #[test]
        fn milestones_never_move_backwards(a in 0i64..1_000_000, b in 0i64..1_000_000) {
            let ta = OffsetDateTime::from_unix_timestamp(a).unwrap();
            let tb = OffsetDateTime::from_unix_timestamp(b).unwrap();
            prop_assert!(latest(Some(ta), tb) >= ta);
            prop_assert_eq!(first(Some(ta), tb), ta);
        }
    }
}
