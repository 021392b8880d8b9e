//! `POST /processes/{id}/cancel`.

use serde_json::Value;

use super::{RequestedBy, requested_by};
use crate::domain::check::{Checker, Reported};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Soft,
    Hard,
    SoftThenForce,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Soft => "soft",
            Strategy::Hard => "hard",
            Strategy::SoftThenForce => "soft_then_force",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CancelRequest {
    pub reason: String,
    pub requested_by: RequestedBy,
    pub strategy: Strategy,
    pub force_after_seconds: i64,
}

pub fn cancel(body: &Value) -> Result<CancelRequest, Vec<String>> {
    let mut c = Checker::default();
    let Some(obj) = c.root(body) else {
        return Err(c.errors);
    };
    let reason = c.req_str(obj, "reason", "", 1, 500);
    let requested_by = requested_by(&mut c, obj);
    let strategy = match c.opt_str(obj, "strategy", "", 1, 50) {
        Ok(None) => Some(Strategy::SoftThenForce),
        Ok(Some(s)) => c
            .enum_value(s, "strategy", &["soft", "hard", "soft_then_force"])
            .map(|s| match s.as_str() {
                "soft" => Strategy::Soft,
                "hard" => Strategy::Hard,
                _ => Strategy::SoftThenForce,
            }),
        Err(Reported) => None,
    };
    let force = c.opt_int(obj, "force_after_seconds", "", 0, 86_400, 10);
    match (reason, requested_by, strategy, force) {
        (Some(reason), Some(requested_by), Some(strategy), Some(force_after_seconds))
            if c.is_ok() =>
        {
            Ok(CancelRequest {
                reason,
                requested_by,
                strategy,
                force_after_seconds,
            })
        }
        _ => Err(c.errors),
    }
}
