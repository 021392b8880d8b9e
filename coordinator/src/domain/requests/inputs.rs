//! The capabilities' inputs, every default filled in: `keyword_warmup`, `fyp_warmup`,
//! `maintenance`.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::domain::check::{Checker, INVALID_VALUE, MISSING, OUT_OF_RANGE, Reported, join};

fn watch_seconds(c: &mut Checker, inputs: &Map<String, Value>) -> Option<Value> {
    let Some(ws) = inputs.get("watch_seconds").filter(|v| !v.is_null()) else {
        return Some(json!({"min": 8, "max": 25}));
    };
    let Some(ws) = ws.as_object() else {
        c.push("invalid_type", "inputs.watch_seconds:expected_object");
        return None;
    };
    let min = c.opt_int(ws, "min", "inputs.watch_seconds", 1, 300, 8);
    let max = c.opt_int(ws, "max", "inputs.watch_seconds", 1, 300, 25);
    let (min, max) = (min?, max?);
    if min > max {
        c.push(OUT_OF_RANGE, "inputs.watch_seconds:min_above_max");
        return None;
    }
    Some(json!({"min": min, "max": max}))
}

pub(super) fn keyword_warmup(c: &mut Checker, inputs: &Map<String, Value>) -> Option<Value> {
    let keywords = match c.opt_str_array(inputs, "keywords", "inputs", (1, 100), 20) {
        Ok(Some(k)) if k.is_empty() => {
            c.push(OUT_OF_RANGE, "inputs.keywords:1_to_20_items");
            None
        }
        Ok(Some(k)) => {
            let unique: BTreeSet<_> = k.iter().collect();
            if unique.len() != k.len() {
                c.push(INVALID_VALUE, "inputs.keywords:duplicates");
                None
            } else {
                Some(k)
            }
        }
        Ok(None) => {
            c.push(MISSING, "inputs.keywords");
            None
        }
        Err(Reported) => None,
    };
    let videos = c.opt_int(inputs, "videos_per_keyword", "inputs", 1, 20, 3);
    let watch = watch_seconds(c, inputs);
    let like = c.opt_f64(inputs, "like_probability", "inputs", 0.0, 1.0, 0.0);
    let mut plan_out = None;
    match inputs.get("comment_plan").filter(|v| !v.is_null()) {
        None => {}
        Some(Value::Object(plan)) => {
            let mut out = Map::new();
            let mut ok = true;
            for (k, v) in plan {
                let p = format!("inputs.comment_plan.{k}");
                match v.as_object() {
                    Some(o) => match c.req_str(o, "text", &p, 1, 150) {
                        Some(text) => {
                            out.insert(k.clone(), json!({"text": text}));
                        }
                        None => ok = false,
                    },
                    None => {
                        c.push("invalid_type", &format!("{p}:expected_object"));
                        ok = false;
                    }
                }
            }
            if let Some(kws) = &keywords {
                let want: BTreeSet<&str> = kws.iter().map(String::as_str).collect();
                let have: BTreeSet<&str> = plan.keys().map(String::as_str).collect();
                if want != have {
                    c.raw("needs_comment_plan:comment_plan_keys_must_match_keywords");
                    ok = false;
                }
            }
            if ok {
                plan_out = Some(Value::Object(out));
            }
        }
        Some(_) => c.push("invalid_type", "inputs.comment_plan:expected_object"),
    }
    let mut out = json!({
        "keywords": keywords?,
        "videos_per_keyword": videos?,
        "watch_seconds": watch?,
        "like_probability": like?,
    });
    if let Some(plan) = plan_out {
        out["comment_plan"] = plan;
    }
    Some(out)
}

pub(super) fn fyp_warmup(c: &mut Checker, inputs: &Map<String, Value>) -> Option<Value> {
    let duration = c.opt_int(inputs, "duration_seconds", "inputs", 60, 3600, 600);
    let watch = watch_seconds(c, inputs);
    let prompt = match inputs.get("judge_prompt").filter(|v| !v.is_null()) {
        None => {
            c.raw("missing_fyp_judge_prompt");
            None
        }
        Some(Value::String(s)) if s.trim().is_empty() => {
            c.raw("missing_fyp_judge_prompt");
            None
        }
        Some(_) => c.req_str(inputs, "judge_prompt", "inputs", 1, 2000),
    };
    let like = c.opt_f64(inputs, "like_probability", "inputs", 0.0, 1.0, 0.0);
    Some(json!({
        "duration_seconds": duration?,
        "watch_seconds": watch?,
        "judge_prompt": prompt?,
        "like_probability": like?,
    }))
}

fn username_ok(s: &str) -> bool {
    s.chars()
        .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '.' || ch == '_')
}

/// `maintenance.inputs` (`steps` of `edit_profile`), shared by enqueue and
/// POST /maintenance/requests.
pub fn maintenance_inputs(c: &mut Checker, inputs: &Map<String, Value>) -> Option<Value> {
    let steps = match inputs.get("steps").filter(|v| !v.is_null()) {
        None => {
            c.push(MISSING, "inputs.steps");
            None
        }
        Some(Value::Array(steps)) if steps.is_empty() || steps.len() > 10 => {
            c.push(OUT_OF_RANGE, "inputs.steps:1_to_10_items");
            None
        }
        Some(Value::Array(steps)) => {
            let mut out = Vec::new();
            let mut ok = true;
            for (i, step) in steps.iter().enumerate() {
                let p = format!("inputs.steps[{i}]");
                let Some(step) = step.as_object() else {
                    c.push("invalid_type", &format!("{p}:expected_object"));
                    ok = false;
                    continue;
                };
                let action = c.req_enum(step, "action", &p, &["edit_profile"]);
                let Some(params) = c.req_obj(step, "params", &p) else {
                    ok = false;
                    continue;
                };
                let pp = join(&p, "params");
                let display_name = c.opt_str(params, "display_name", &pp, 1, 30);
                let bio = c.opt_str(params, "bio", &pp, 0, 80);
                let username = c.opt_str(params, "username", &pp, 2, 24);
                if let Ok(Some(u)) = &username
                    && !username_ok(u)
                {
                    c.push(INVALID_VALUE, &format!("{pp}.username:allowed_a-z0-9._"));
                    ok = false;
                }
                let mutation_kind = c.opt_str(params, "mutation_kind", &pp, 1, 100);
                let randomized = c.opt_bool(params, "randomized", &pp);
                let (Some(action), Ok(display_name), Ok(bio), Ok(username), Ok(mk), Ok(rnd)) = (
                    action,
                    display_name,
                    bio,
                    username,
                    mutation_kind,
                    randomized,
                ) else {
                    ok = false;
                    continue;
                };
                if display_name.is_none() && bio.is_none() && username.is_none() {
                    c.push(MISSING, &format!("{pp}.display_name|bio|username"));
                    ok = false;
                    continue;
                }
                let mut params = Map::new();
                for (k, v) in [
                    ("display_name", display_name),
                    ("bio", bio),
                    ("username", username),
                    ("mutation_kind", mk),
                ] {
                    if let Some(v) = v {
                        params.insert(k.into(), Value::String(v));
                    }
                }
                if let Some(r) = rnd {
                    params.insert("randomized".into(), Value::Bool(r));
                }
                out.push(json!({"action": action, "params": params}));
            }
            ok.then_some(out)
        }
        Some(_) => {
            c.push("invalid_type", "inputs.steps:expected_array");
            None
        }
    };
    let metadata = c.opt_obj(inputs, "metadata", "inputs");
    Some(json!({"steps": steps?, "metadata": metadata?}))
}
