//! What becomes of a queue item whose run ended without success: the one rule shared by the
//! ingester (an agent's `Finished` failure) and the sweeper (a lease that lapsed).

use std::time::Duration;

use super::status::ItemState;

/// How long a `RETRYABLE` item waits before attempt `attempt + 1`: `base` doubled per attempt
/// (attempt 1 waits `base`), at most `max`.
pub fn backoff(attempt: i32, base: Duration, max: Duration) -> Duration {
    let exp = attempt.clamp(1, 16) as u32 - 1;
    base.checked_mul(1 << exp).unwrap_or(max).min(max)
}

/// How a run ended without success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending<'a> {
    /// The agent reported a failure: its error code and its own `retryable` flag.
    Failed {
        code: &'a str,
        agent_retryable: bool,
    },
    /// The lease lapsed: the agent stopped reporting (always worth another attempt).
    Lapsed,
}

impl Ending<'_> {
    /// Whether the reason allows another attempt: `device_error` does; `flow_error` and
    /// `account_outcome` never do (the same screen or account would fail the same way); other
    /// codes follow the agent's flag; a lapse does.
    pub fn retryable(&self) -> bool {
        match *self {
            Ending::Lapsed => true,
            Ending::Failed {
                code,
                agent_retryable,
            } => match code.split(':').next().unwrap_or("") {
                "device_error" => true,
                "flow_error" | "account_outcome" => false,
                _ => agent_retryable,
            },
        }
    }
}

/// The next state: a cancel was requested → `CANCELLED`; attempts left and a retryable reason
/// → `RETRYABLE`; otherwise `DEAD_LETTER`. `attempt` is the attempt that ended (from 1).
pub fn next_state(
    ending: Ending<'_>,
    cancel_requested: bool,
    attempt: i32,
    max_attempts: i32,
) -> ItemState {
    if cancel_requested {
        ItemState::Cancelled
    } else if ending.retryable() && attempt < max_attempts {
        ItemState::Retryable
    } else {
        ItemState::DeadLetter
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ItemState::{Cancelled, DeadLetter, Retryable};

    fn failed(code: &str, agent_retryable: bool) -> Ending<'_> {
        Ending::Failed {
            code,
            agent_retryable,
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let (base, max) = (Duration::from_secs(5), Duration::from_secs(60));
        let table = [
            (0, 5),
            (1, 5),
            (2, 10),
            (3, 20),
            (4, 40),
            (5, 60),
            (16, 60),
            (99, 60),
        ];
        for (attempt, secs) in table {
            assert_eq!(
                backoff(attempt, base, max),
                Duration::from_secs(secs),
                "attempt {attempt}"
            );
        }
    }

    #[test]
    fn retry_policy_by_code() {
        let table = [
            (failed("device_error", false), true),
            (failed("device_error:usb_reset", false), true),
            (failed("flow_error:unknown_screen", true), false),
            (failed("account_outcome:banned", true), false),
            (failed("timeout", true), true),
            (failed("timeout", false), false),
            (failed("", true), true),
            (Ending::Lapsed, true),
        ];
        for (ending, want) in table {
            assert_eq!(ending.retryable(), want, "{ending:?}");
        }
    }

    #[test]
    fn next_state_after_a_failed_or_lapsed_run() {
        // (ending, cancel requested, attempt, max attempts) -> next state
        let table = [
            // A cancel wins over everything.
            (Ending::Lapsed, true, 1, 3, Cancelled),
            (failed("device_error", true), true, 1, 3, Cancelled),
            (failed("flow_error:x", false), true, 3, 3, Cancelled),
            // Attempts left and a retryable reason.
            (Ending::Lapsed, false, 1, 3, Retryable),
            (Ending::Lapsed, false, 2, 3, Retryable),
            (
                failed("device_error:usb_reset", false),
                false,
                1,
                2,
                Retryable,
            ),
            (failed("timeout", true), false, 1, 3, Retryable),
            // No attempts left.
            (Ending::Lapsed, false, 3, 3, DeadLetter),
            (failed("device_error", true), false, 2, 2, DeadLetter),
            (Ending::Lapsed, false, 1, 1, DeadLetter),
            // A reason that is never retried.
            (
                failed("flow_error:unknown_screen", true),
                false,
                1,
                3,
                DeadLetter,
            ),
            (
                failed("account_outcome:banned", true),
                false,
                1,
                3,
                DeadLetter,
            ),
            (failed("timeout", false), false, 1, 3, DeadLetter),
        ];
        for (ending, cancel, attempt, max, want) in table {
            assert_eq!(
                next_state(ending, cancel, attempt, max),
                want,
                "{ending:?} cancel={cancel} attempt {attempt}/{max}"
            );
        }
    }
}
