//! The USB manager's decisions as pure functions and small state machines (no I/O, no clock of
//! their own: callers pass `now`): port paths, fleet-wide phone ids and serial collisions, the
//! permission-wait backoff, the recovery ladder, and what changed between two enumerations.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// `<bus>-<port>[.<port>…]`, as Linux names the device in sysfs (e.g. `1-2.3`).
pub fn port_path(bus: u8, ports: &[u8]) -> String {
    let ports: Vec<String> = ports.iter().map(u8::to_string).collect();
    format!("{bus}-{}", ports.join("."))
}

/// Whether `s` looks like a port path (`1-2`, `3-1.4.2`), as opposed to a serial or address.
pub fn is_port_path(s: &str) -> bool {
    let Some((bus, ports)) = s.split_once('-') else {
        return false;
    };
    let num = |p: &str| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit());
    num(bus) && ports.split('.').all(num)
}

/// A port path as a subject-safe token (NATS subjects split on `.`): `1-2.3` → `1-2_3`.
pub fn port_token(port_path: &str) -> String {
    port_path.replace('.', "_")
}

/// The fleet-wide id of one USB phone, and whether its serial collides with another phone's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub phone_id: String,
    pub collision: bool,
}

/// Assigns phone ids to the phones on this host, given `(port path, serial)` pairs: the serial
/// when it is unique here; `serial@<port token>` for every phone sharing a serial; `usb-<port
/// token>` when a phone reports no serial (yet). Ids never contain `.`, so they can be used in
/// subjects.
pub fn assign_ids<'a>(
    phones: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
) -> BTreeMap<String, Identity> {
    let phones: Vec<_> = phones.into_iter().collect();
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, s) in &phones {
        if let Some(s) = s.filter(|s| !s.is_empty()) {
            *count.entry(s).or_default() += 1;
        }
    }
    phones
        .into_iter()
        .map(|(port, serial)| {
            let id = match serial.filter(|s| !s.is_empty()) {
                None => Identity {
                    phone_id: format!("usb-{}", port_token(port)),
                    collision: false,
                },
                Some(s) if count[s] > 1 => Identity {
                    phone_id: format!("{}@{}", sanitize(s), port_token(port)),
                    collision: true,
                },
                Some(s) => Identity {
                    phone_id: sanitize(s),
                    collision: false,
                },
            };
            (port.to_string(), id)
        })
        .collect()
}

/// Serials are usually alphanumeric; anything that would break a subject token becomes `_`.
fn sanitize(serial: &str) -> String {
    serial
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && !matches!(c, '.' | '*' | '>' | '@') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Serials shared by more than one phone, each with its port paths (sorted): one
/// `serial_collision` warning per entry.
pub fn collisions<'a>(
    phones: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
) -> BTreeMap<String, Vec<String>> {
    let mut by_serial: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (port, serial) in phones {
        if let Some(s) = serial.filter(|s| !s.is_empty()) {
            by_serial
                .entry(s.to_string())
                .or_default()
                .insert(port.to_string());
        }
    }
    by_serial
        .into_iter()
        .filter(|(_, ports)| ports.len() > 1)
        .map(|(s, ports)| (s, ports.into_iter().collect()))
        .collect()
}

/// Opening a device that appeared before udev gave its node the right mode fails with EACCES;
/// this retries with a doubling delay for a bounded time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PermissionWait {
    first_denied: Instant,
    attempts: u32,
}

/// Bounds of the permission wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PermissionPolicy {
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// Give up (needs_attention) once this long has passed since the first denial.
    pub give_up_after: Duration,
}

impl Default for PermissionPolicy {
    fn default() -> Self {
        Self {
            first_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(2),
            give_up_after: Duration::from_secs(30),
        }
    }
}

impl PermissionWait {
    pub fn new(now: Instant) -> Self {
        Self {
            first_denied: now,
            attempts: 0,
        }
    }

    /// After another denial at `now`: when to try again, or `None` to give up.
    pub fn next_retry(&mut self, now: Instant, p: &PermissionPolicy) -> Option<Instant> {
        if now.saturating_duration_since(self.first_denied) >= p.give_up_after {
            return None;
        }
        let factor = 1u32 << self.attempts.min(16);
        self.attempts += 1;
        let delay = p.first_delay.saturating_mul(factor).min(p.max_delay);
        let deadline = self.first_denied + p.give_up_after;
        Some((now + delay).min(deadline))
    }

    pub fn attempts(&self) -> u32 {
        self.attempts
    }
}

/// One rung of the recovery ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Recovery {
    /// Close the interface and open it again.
    Reconnect,
    /// Reopen and clear a halt on both bulk endpoints.
    ClearHalt,
    /// Reset the device (it may re-enumerate on the same port), then reopen.
    Reset,
    /// Stop trying: a human has to look (`needs_attention`) until the phone is replugged.
    GiveUp,
}

impl Recovery {
    pub fn as_str(self) -> &'static str {
        match self {
            Recovery::Reconnect => "reconnect",
            Recovery::ClearHalt => "clear_halt",
            Recovery::Reset => "reset",
            Recovery::GiveUp => "give_up",
        }
    }
}

/// The recovery ladder of one port: each connection failure climbs one rung; a connection that
/// stayed online for `healthy_after` puts the ladder back at the bottom.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ladder {
    rung: u8,
}

impl Ladder {
    /// The next step after a failure; `online_for` is how long the failed connection had been
    /// online (`None` if it never came online).
    pub fn on_failure(
        &mut self,
        online_for: Option<Duration>,
        healthy_after: Duration,
    ) -> Recovery {
        if online_for.is_some_and(|d| d >= healthy_after) {
            self.rung = 0;
        }
        let step = match self.rung {
            0 => Recovery::Reconnect,
            1 => Recovery::ClearHalt,
            2 => Recovery::Reset,
            _ => Recovery::GiveUp,
        };
        self.rung = self.rung.saturating_add(1).min(4);
        step
    }

    pub fn gave_up(&self) -> bool {
        self.rung >= 4
    }
}

/// One ADB interface as an enumeration lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub port_path: String,
    /// The device's address on its bus: a new address on the same port means the device
    /// re-enumerated (replugged, or reset).
    pub address: u8,
    pub vendor_id: u16,
    pub product_id: u16,
}

/// What changed between the ports we track and a fresh enumeration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    pub appeared: Vec<Listed>,
    pub gone: Vec<String>,
    /// Same port, new address.
    pub reenumerated: Vec<Listed>,
}

/// Compares tracked `(port path, address)` pairs with a listing.
pub fn diff<'a>(known: impl IntoIterator<Item = (&'a str, u8)>, listed: &[Listed]) -> Diff {
    let known: BTreeMap<&str, u8> = known.into_iter().collect();
    let mut d = Diff::default();
    let mut seen = BTreeSet::new();
    for l in listed {
        if !seen.insert(l.port_path.as_str()) {
            continue; // a second ADB interface on the same device: the first one wins
        }
        match known.get(l.port_path.as_str()) {
            None => d.appeared.push(l.clone()),
            Some(a) if *a != l.address => d.reenumerated.push(l.clone()),
            Some(_) => {}
        }
    }
    d.gone = known
        .keys()
        .filter(|p| !seen.contains(*p))
        .map(|p| p.to_string())
        .collect();
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_paths() {
        assert_eq!(port_path(1, &[2, 3]), "1-2.3");
        assert_eq!(port_path(3, &[1]), "3-1");
        assert!(is_port_path("1-2.3"));
        assert!(is_port_path("10-1"));
        assert!(!is_port_path("127.0.0.1:5555"));
        assert!(!is_port_path("R58M123ABC"));
        assert!(!is_port_path("1-"));
        assert!(!is_port_path("1-2..3"));
        assert_eq!(port_token("1-2.3.4"), "1-2_3_4");
    }

    #[test]
    fn unique_serials_are_ids_and_shared_ones_get_the_port() {
        let ids = assign_ids([
            ("1-1", Some("AAA")),
            ("1-2", Some("0123456789ABCDEF")),
            ("1-3.1", Some("0123456789ABCDEF")),
            ("1-4", None),
            ("1-5", Some("")),
        ]);
        assert_eq!(ids["1-1"].phone_id, "AAA");
        assert!(!ids["1-1"].collision);
        assert_eq!(ids["1-2"].phone_id, "0123456789ABCDEF@1-2");
        assert_eq!(ids["1-3.1"].phone_id, "0123456789ABCDEF@1-3_1");
        assert!(ids["1-2"].collision && ids["1-3.1"].collision);
        assert_eq!(ids["1-4"].phone_id, "usb-1-4");
        assert_eq!(ids["1-5"].phone_id, "usb-1-5");
        for id in ids.values() {
            assert!(phonefarm_shared::is_subject_token(&id.phone_id), "{id:?}");
        }
        let c = collisions([
            ("1-1", Some("AAA")),
            ("1-3.1", Some("X")),
            ("1-2", Some("X")),
        ]);
        assert_eq!(
            c,
            BTreeMap::from([(
                "X".to_string(),
                vec!["1-2".to_string(), "1-3.1".to_string()]
            )])
        );
    }

    #[test]
    fn odd_serials_stay_subject_safe() {
        let ids = assign_ids([("2-1", Some("a.b c*"))]);
        assert_eq!(ids["2-1"].phone_id, "a_b_c_");
    }

    #[test]
    fn permission_wait_backs_off_then_gives_up() {
        let p = PermissionPolicy {
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
            give_up_after: Duration::from_secs(2),
        };
        let t0 = Instant::now();
        let mut w = PermissionWait::new(t0);
        let mut now = t0;
        let mut delays = Vec::new();
        while let Some(at) = w.next_retry(now, &p) {
            delays.push(at - now);
            now = at;
        }
        assert_eq!(
            &delays[..4],
            &[100, 200, 400, 500].map(Duration::from_millis)
        );
        assert!(now >= t0 + p.give_up_after);
        assert!(now <= t0 + p.give_up_after + Duration::from_millis(1));
        assert!(w.attempts() >= 5);
    }

    #[test]
    fn ladder_climbs_then_gives_up_and_resets_after_a_healthy_run() {
        let h = Duration::from_secs(30);
        let mut l = Ladder::default();
        assert_eq!(l.on_failure(None, h), Recovery::Reconnect);
        assert_eq!(
            l.on_failure(Some(Duration::from_secs(1)), h),
            Recovery::ClearHalt
        );
        assert_eq!(l.on_failure(None, h), Recovery::Reset);
        assert!(!l.gave_up());
        assert_eq!(l.on_failure(None, h), Recovery::GiveUp);
        assert!(l.gave_up());
        assert_eq!(l.on_failure(None, h), Recovery::GiveUp);
        // A connection that was healthy long enough starts over.
        let mut l = Ladder::default();
        l.on_failure(None, h);
        l.on_failure(None, h);
        assert_eq!(l.on_failure(Some(h), h), Recovery::Reconnect);
    }

    fn listed(port: &str, address: u8) -> Listed {
        Listed {
            port_path: port.into(),
            address,
            vendor_id: 0x18d1,
            product_id: 0x4ee7,
        }
    }

    #[test]
    fn diff_sees_arrivals_departures_and_reenumeration() {
        let d = diff(
            [("1-1", 5), ("1-2", 6), ("1-3", 7)],
            &[
                listed("1-1", 5),
                listed("1-3", 9),
                listed("1-4", 10),
                listed("1-4", 10),
            ],
        );
        assert_eq!(d.appeared, vec![listed("1-4", 10)]);
        assert_eq!(d.gone, vec!["1-2".to_string()]);
        assert_eq!(d.reenumerated, vec![listed("1-3", 9)]);
        assert_eq!(diff([], &[]), Diff::default());
    }
}
