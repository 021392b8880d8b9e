//! Registry bodies: `PUT /accounts/{id}`, `PUT /capabilities/{name}`.

use serde_json::Value;

use crate::domain::check::{Checker, INVALID_VALUE, MISSING, Reported};

/// PUT /accounts/{id}.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountPut {
    pub phone_id: Option<String>,
    pub platform_username: Option<String>,
    pub active: bool,
}

pub fn account_put(body: &Value) -> Result<AccountPut, Vec<String>> {
    let mut c = Checker::default();
    let Some(obj) = c.root(body) else {
        return Err(c.errors);
    };
    if !obj.contains_key("phone_id") {
        c.push(MISSING, "phone_id");
    }
    let phone_id = c.opt_str(obj, "phone_id", "", 1, 200);
    let username = c.opt_str(obj, "platform_username", "", 1, 200);
    let active = c.opt_bool(obj, "active", "");
    match (phone_id, username, active) {
        (Ok(phone_id), Ok(platform_username), Ok(active)) if c.is_ok() => Ok(AccountPut {
            phone_id,
            platform_username,
            active: active.unwrap_or(true),
        }),
        _ => Err(c.errors),
    }
}

/// PUT /capabilities/{name}.
pub fn capability_put(
    name: &str,
    body: &Value,
) -> Result<crate::domain::capabilities::CapabilityRule, Vec<String>> {
    let mut c = Checker::default();
    let Some(obj) = c.root(body) else {
        return Err(c.errors);
    };
    let manual = c.req_bool(obj, "manual", "");
    let unattended = c.req_bool(obj, "unattended", "");
    let live = c.req_bool(obj, "live_verified", "");
    let routings = match c.opt_str_array(obj, "routings", "", (1, 20), 3) {
        Ok(Some(r)) => {
            let mut ok = true;
            for (i, x) in r.iter().enumerate() {
                if !crate::domain::capabilities::ROUTINGS.contains(&x.as_str()) {
                    c.push(
                        INVALID_VALUE,
                        &format!("routings[{i}]:expected_one_of_direct|queue|group"),
                    );
                    ok = false;
                }
            }
            ok.then_some(r)
        }
        Ok(None) => {
            c.push(MISSING, "routings");
            None
        }
        Err(Reported) => None,
    };
    match (manual, unattended, live, routings) {
        (Some(manual), Some(unattended), Some(live_verified), Some(routings)) if c.is_ok() => {
            Ok(crate::domain::capabilities::CapabilityRule {
                name: name.into(),
                manual,
                unattended,
                live_verified,
                routings,
            })
        }
        _ => Err(c.errors),
    }
}
