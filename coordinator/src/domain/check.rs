//! A small collecting validator over `serde_json::Value`: every problem is recorded as a
//! contract-style `reason:detail` string and validation goes on, so a response lists all of them.

use serde_json::{Map, Value};

/// Reasons used by the generic checks.
pub const MISSING: &str = "missing_field";
pub const INVALID_TYPE: &str = "invalid_type";
pub const OUT_OF_RANGE: &str = "out_of_range";
pub const INVALID_VALUE: &str = "invalid_value";

/// Marker error: the problem is already recorded in the [`Checker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reported;

#[derive(Debug, Default)]
pub struct Checker {
    pub errors: Vec<String>,
}

pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn present<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

impl Checker {
    pub fn push(&mut self, reason: &str, detail: &str) {
        self.errors.push(format!("{reason}:{detail}"));
    }

    pub fn raw(&mut self, s: impl Into<String>) {
        self.errors.push(s.into());
    }

    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }

    /// The top-level body must be an object.
    pub fn root<'a>(&mut self, v: &'a Value) -> Option<&'a Map<String, Value>> {
        match v {
            Value::Object(m) => Some(m),
            _ => {
                self.push(INVALID_TYPE, "body:expected_object");
                None
            }
        }
    }

    pub fn req_obj<'a>(
        &mut self,
        obj: &'a Map<String, Value>,
        key: &str,
        path: &str,
    ) -> Option<&'a Map<String, Value>> {
        let p = join(path, key);
        match present(obj, key) {
            None => {
                self.push(MISSING, &p);
                None
            }
            Some(Value::Object(m)) => Some(m),
            Some(_) => {
                self.push(INVALID_TYPE, &format!("{p}:expected_object"));
                None
            }
        }
    }

    /// An optional object; absent or null gives `{}`.
    pub fn opt_obj(&mut self, obj: &Map<String, Value>, key: &str, path: &str) -> Option<Value> {
        match present(obj, key) {
            None => Some(Value::Object(Map::new())),
            Some(v @ Value::Object(_)) => Some(v.clone()),
            Some(_) => {
                self.push(
                    INVALID_TYPE,
                    &format!("{}:expected_object", join(path, key)),
                );
                None
            }
        }
    }

    fn str_in(&mut self, v: &Value, p: &str, min: usize, max: usize) -> Option<String> {
        match v {
            Value::String(s) => {
                let n = s.chars().count();
                if n < min || n > max {
                    self.push(OUT_OF_RANGE, &format!("{p}:length_{min}_to_{max}"));
                    None
                } else {
                    Some(s.clone())
                }
            }
            _ => {
                self.push(INVALID_TYPE, &format!("{p}:expected_string"));
                None
            }
        }
    }

    pub fn req_str(
        &mut self,
        obj: &Map<String, Value>,
        key: &str,
        path: &str,
        min: usize,
        max: usize,
    ) -> Option<String> {
        let p = join(path, key);
        match present(obj, key) {
            None => {
                self.push(MISSING, &p);
                None
            }
            Some(v) => self.str_in(v, &p, min, max),
        }
    }

    /// Optional string: `Ok(None)` when absent or null, `Err(Reported)` when present but invalid.
    pub fn opt_str(
        &mut self,
        obj: &Map<String, Value>,
        key: &str,
        path: &str,
        min: usize,
        max: usize,
    ) -> Result<Option<String>, Reported> {
        match present(obj, key) {
            None => Ok(None),
            Some(v) => self
                .str_in(v, &join(path, key), min, max)
                .map(Some)
                .ok_or(Reported),
        }
    }

    pub fn opt_int(
        &mut self,
        obj: &Map<String, Value>,
        key: &str,
        path: &str,
        min: i64,
        max: i64,
        default: i64,
    ) -> Option<i64> {
        match present(obj, key) {
            None => Some(default),
            Some(v) => self.int_in(v, &join(path, key), min, max),
        }
    }

    pub fn req_int(
        &mut self,
        obj: &Map<String, Value>,
        key: &str,
        path: &str,
        min: i64,
        max: i64,
    ) -> Option<i64> {
        let p = join(path, key);
        match present(obj, key) {
            None => {
                self.push(MISSING, &p);
                None
            }
            Some(v) => self.int_in(v, &p, min, max),
        }
    }

    fn int_in(&mut self, v: &Value, p: &str, min: i64, max: i64) -> Option<i64> {
        let n = match v {
            Value::Number(n) => n.as_i64().or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                    .map(|f| f as i64)
            }),
            _ => None,
        };
        match n {
            None if v.is_number() && v.as_u64().is_some() => {
                self.push(OUT_OF_RANGE, &format!("{p}:{min}_to_{max}"));
                None
            }
            None => {
                self.push(INVALID_TYPE, &format!("{p}:expected_integer"));
                None
            }
            Some(n) if n < min || n > max => {
                self.push(OUT_OF_RANGE, &format!("{p}:{min}_to_{max}"));
                None
            }
            Some(n) => Some(n),
        }
    }

    pub fn opt_f64(
        &mut self,
        obj: &Map<String, Value>,
        key: &str,
        path: &str,
        min: f64,
        max: f64,
        default: f64,
    ) -> Option<f64> {
        let p = join(path, key);
        match present(obj, key) {
            None => Some(default),
            Some(Value::Number(n)) => match n.as_f64() {
                Some(f) if f >= min && f <= max => Some(f),
                _ => {
                    self.push(OUT_OF_RANGE, &format!("{p}:{min}_to_{max}"));
                    None
                }
            },
            Some(_) => {
                self.push(INVALID_TYPE, &format!("{p}:expected_number"));
                None
            }
        }
    }

    pub fn opt_bool(
        &mut self,
        obj: &Map<String, Value>,
        key: &str,
        path: &str,
    ) -> Result<Option<bool>, Reported> {
        match present(obj, key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => {
                self.push(
                    INVALID_TYPE,
                    &format!("{}:expected_boolean", join(path, key)),
                );
                Err(Reported)
            }
        }
    }

    pub fn req_bool(&mut self, obj: &Map<String, Value>, key: &str, path: &str) -> Option<bool> {
        match self.opt_bool(obj, key, path) {
            Ok(Some(b)) => Some(b),
            Ok(None) => {
                self.push(MISSING, &join(path, key));
                None
            }
            Err(Reported) => None,
        }
    }

    /// An optional array of strings, each `min..=max` chars, at most `max_items` entries.
    pub fn opt_str_array(
        &mut self,
        obj: &Map<String, Value>,
        key: &str,
        path: &str,
        (min, max): (usize, usize),
        max_items: usize,
    ) -> Result<Option<Vec<String>>, Reported> {
        let p = join(path, key);
        match present(obj, key) {
            None => Ok(None),
            Some(Value::Array(items)) => {
                let mut ok = true;
                if items.len() > max_items {
                    self.push(OUT_OF_RANGE, &format!("{p}:at_most_{max_items}_items"));
                    ok = false;
                }
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    match self.str_in(item, &format!("{p}[{i}]"), min, max) {
                        Some(s) => out.push(s),
                        None => ok = false,
                    }
                }
                if ok { Ok(Some(out)) } else { Err(Reported) }
            }
            Some(_) => {
                self.push(INVALID_TYPE, &format!("{p}:expected_array"));
                Err(Reported)
            }
        }
    }

    /// A string that must be one of `allowed`.
    pub fn req_enum(
        &mut self,
        obj: &Map<String, Value>,
        key: &str,
        path: &str,
        allowed: &[&str],
    ) -> Option<String> {
        let s = self.req_str(obj, key, path, 1, 100)?;
        self.enum_value(s, &join(path, key), allowed)
    }

    pub fn enum_value(&mut self, s: String, p: &str, allowed: &[&str]) -> Option<String> {
        if allowed.contains(&s.as_str()) {
            Some(s)
        } else {
            self.push(
                INVALID_VALUE,
                &format!("{p}:expected_one_of_{}", allowed.join("|")),
            );
            None
        }
    }

    /// An http(s) URL.
    pub fn url(&mut self, s: String, p: &str) -> Option<String> {
        match reqwest::Url::parse(&s) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(s),
            _ => {
                self.push(INVALID_VALUE, &format!("{p}:expected_http_url"));
                None
            }
        }
    }

    /// An RFC 3339 / ISO-8601 timestamp.
    pub fn timestamp(&mut self, s: &str, p: &str) -> Option<time::OffsetDateTime> {
        match time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
            Ok(t) => Some(t),
            Err(_) => {
                self.push(INVALID_VALUE, &format!("{p}:expected_rfc3339_timestamp"));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn collects_every_problem() {
        let v = json!({"a": 5, "c": "x", "d": 1.5, "e": 500});
        let obj = v.as_object().unwrap();
        let mut c = Checker::default();
        assert!(c.req_str(obj, "a", "", 1, 10).is_none());
        assert!(c.req_str(obj, "b", "x", 1, 10).is_none());
        assert!(c.req_str(obj, "c", "", 2, 10).is_none());
        assert!(c.req_int(obj, "d", "", 0, 10).is_none());
        assert!(c.req_int(obj, "e", "", 0, 10).is_none());
        assert_eq!(
            c.errors,
            vec![
                "invalid_type:a:expected_string",
                "missing_field:x.b",
                "out_of_range:c:length_2_to_10",
                "invalid_type:d:expected_integer",
                "out_of_range:e:0_to_10",
            ]
        );
    }

    #[test]
    fn null_counts_as_absent() {
        let v = json!({"a": null});
        let obj = v.as_object().unwrap();
        let mut c = Checker::default();
        assert_eq!(c.opt_str(obj, "a", "", 1, 3), Ok(None));
        assert!(c.req_str(obj, "a", "", 1, 3).is_none());
        assert_eq!(c.errors, vec!["missing_field:a"]);
    }

    #[test]
    fn lengths_count_characters_not_bytes() {
        let v = json!({"a": "ééé"});
        let mut c = Checker::default();
        assert_eq!(
            c.req_str(v.as_object().unwrap(), "a", "", 1, 3).as_deref(),
            Some("ééé")
        );
    }

    #[test]
    fn urls_must_be_http() {
        let mut c = Checker::default();
        assert!(c.url("ftp://x/".into(), "u").is_none());
        assert!(c.url("not a url".into(), "u").is_none());
        assert!(c.url("https://example.com/cb".into(), "u").is_some());
        assert_eq!(c.errors.len(), 2);
    }
}
