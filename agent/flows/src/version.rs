//! App versions (`32.5.3`) and version ranges (`>=32.0.0, <33.0.0`) for choosing a flow pack,
//! and reading the installed version from `dumpsys package PKG`.
//!
//! A version is a list of numeric components compared component-wise, missing components
//! counting as zero (`32.5` == `32.5.0`). An installed `versionName` may carry a suffix
//! (`32.5.3-beta`, `33.1.0 (2023)`); only its leading numeric part is used.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("bad version {0:?}: expected dot-separated numbers such as 32.5.3")]
    BadVersion(String),
    #[error("bad version range {range:?}: {reason}")]
    BadRange { range: String, reason: String },
    #[error("no versionName in dumpsys output (is the package installed?)")]
    NoVersionName,
}

/// A dotted numeric version.
#[derive(Debug, Clone)]
pub struct Version(Vec<u64>);

impl Version {
    pub fn components(&self) -> &[u64] {
        &self.0
    }

    /// The leading `N(.N)*` of `s`, ignoring any suffix; error if it does not start with a digit.
    pub fn parse_lenient(s: &str) -> Result<Self, VersionError> {
        let s = s.trim();
        let mut parts = Vec::new();
        for piece in s.split('.') {
            let digits: String = piece.chars().take_while(char::is_ascii_digit).collect();
            if digits.is_empty() {
                break;
            }
            parts.push(
                digits
                    .parse()
                    .map_err(|_| VersionError::BadVersion(s.to_string()))?,
            );
            if digits.len() != piece.len() {
                break;
            }
        }
        if parts.is_empty() {
            return Err(VersionError::BadVersion(s.to_string()));
        }
        Ok(Self(parts))
    }

    fn get(&self, i: usize) -> u64 {
        self.0.get(i).copied().unwrap_or(0)
    }
}

impl FromStr for Version {
    type Err = VersionError;

    /// Strict: only `N(.N)*`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || VersionError::BadVersion(s.to_string());
        let parts = s
            .split('.')
            .map(|p| {
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                p.parse::<u64>().map_err(|_| bad())
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self(parts))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let n = self.0.len().max(other.0.len());
        (0..n)
            .map(|i| self.get(i).cmp(&other.get(i)))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(u64::to_string).collect();
        f.write_str(&parts.join("."))
    }
}

/// A range bound: `(version, inclusive)`.
type Bound<'a> = Option<(&'a Version, bool)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Ge,
    Gt,
    Le,
    Lt,
    Eq,
}

/// A conjunction of comparators, e.g. `>=32.0.0, <33.0.0` or `=32.5.3`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRange {
    source: String,
    comparators: Vec<(Op, Version)>,
}

impl VersionRange {
    pub fn matches(&self, v: &Version) -> bool {
        self.comparators.iter().all(|(op, bound)| match op {
            Op::Ge => v >= bound,
            Op::Gt => v > bound,
            Op::Le => v <= bound,
            Op::Lt => v < bound,
            Op::Eq => v == bound,
        })
    }

    /// The tightest lower and upper bounds, each `(version, inclusive)`.
    fn bounds(&self) -> (Bound<'_>, Bound<'_>) {
        let mut lo: Bound<'_> = None;
        let mut hi: Bound<'_> = None;
        for (op, v) in &self.comparators {
            if matches!(op, Op::Ge | Op::Gt | Op::Eq) {
                let incl = *op != Op::Gt;
                let tighter = lo.is_none_or(|(c, ci)| v > c || (v == c && ci && !incl));
                if tighter {
                    lo = Some((v, incl));
                }
            }
            if matches!(op, Op::Le | Op::Lt | Op::Eq) {
                let incl = *op != Op::Lt;
                let tighter = hi.is_none_or(|(c, ci)| v < c || (v == c && ci && !incl));
                if tighter {
                    hi = Some((v, incl));
                }
            }
        }
        (lo, hi)
    }

    /// True if some version satisfies both ranges (versions are dense: between any two distinct
    /// versions lies another, e.g. `1.0 < 1.0.0.1 < 1.0.1`).
    pub fn overlaps(&self, other: &VersionRange) -> bool {
        let joined = VersionRange {
            source: String::new(),
            comparators: self
                .comparators
                .iter()
                .chain(&other.comparators)
                .cloned()
                .collect(),
        };
        match joined.bounds() {
            (Some((lo, lo_incl)), Some((hi, hi_incl))) => {
                lo < hi || (lo == hi && lo_incl && hi_incl)
            }
            _ => true,
        }
    }
}

impl FromStr for VersionRange {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: String| VersionError::BadRange {
            range: s.to_string(),
            reason,
        };
        let mut comparators = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            let (op, rest) = [
                (">=", Op::Ge),
                ("<=", Op::Le),
                (">", Op::Gt),
                ("<", Op::Lt),
                ("=", Op::Eq),
            ]
            .into_iter()
            .find_map(|(prefix, op)| part.strip_prefix(prefix).map(|r| (op, r)))
            .ok_or_else(|| bad(format!("{part:?} does not start with >=, >, <=, < or =")))?;
            let v: Version = rest
                .trim()
                .parse()
                .map_err(|e: VersionError| bad(e.to_string()))?;
            comparators.push((op, v));
        }
        let range = Self {
            source: s.to_string(),
            comparators,
        };
        if !range.overlaps(&range) {
            return Err(bad("no version satisfies it".into()));
        }
        Ok(range)
    }
}

impl fmt::Display for VersionRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// The first `versionName=` in `dumpsys package PKG` output.
pub fn version_from_dumpsys(output: &str) -> Result<Version, VersionError> {
    let line = output
        .lines()
        .find_map(|l| l.trim().strip_prefix("versionName="))
        .ok_or(VersionError::NoVersionName)?;
    Version::parse_lenient(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    #[test]
    fn ordering() {
        assert!(v("32.5.3") < v("33.0.0"));
        assert_eq!(v("32.5"), v("32.5.0"));
        assert!(v("32.10.0") > v("32.9.9"));
        assert!("32..1".parse::<Version>().is_err());
        assert!("32.a".parse::<Version>().is_err());
        assert_eq!(
            Version::parse_lenient("33.1.0-beta (2023)").unwrap(),
            v("33.1.0")
        );
        assert!(Version::parse_lenient("beta").is_err());
    }

    #[test]
    fn ranges() {
        let r: VersionRange = ">=32.0.0, <33.0.0".parse().unwrap();
        assert!(r.matches(&v("32.5.3")));
        assert!(r.matches(&v("32")));
        assert!(!r.matches(&v("33.0")));
        assert!(!r.matches(&v("31.9.9")));
        let exact: VersionRange = "=33.1.0".parse().unwrap();
        assert!(exact.matches(&v("33.1")));
        assert!(!exact.matches(&v("33.1.1")));
        for bad in ["32", "~32", ">=32,", ">=x", ">=33, <32", ">33, <33", ""] {
            assert!(bad.parse::<VersionRange>().is_err(), "{bad}");
        }
        assert!(">=33, <=33".parse::<VersionRange>().is_ok());
    }

    #[test]
    fn overlap() {
        let r = |s: &str| s.parse::<VersionRange>().unwrap();
        assert!(!r(">=32.0.0, <33.0.0").overlaps(&r(">=33.0.0, <34.0.0")));
        assert!(r(">=32.0.0, <33.0.0").overlaps(&r(">=32.9.0")));
        assert!(r(">=32, <=33").overlaps(&r(">=33, <34")));
        assert!(!r("=32.5.3").overlaps(&r(">32.5.3")));
        assert!(r("<40").overlaps(&r("<1")));
    }

    #[test]
    fn dumpsys() {
        let out = "Packages:\n  Package [com.zhiliaoapp.musically] (abc):\n    versionCode=320503 minSdk=21\n    versionName=32.5.3\n    versionName=30.0.0\n";
        assert_eq!(version_from_dumpsys(out).unwrap(), v("32.5.3"));
        assert_eq!(
            version_from_dumpsys("Unable to find package"),
            Err(VersionError::NoVersionName)
        );
    }
}
