//! The SSRF address policy: which IP addresses outbound requests may dial.
//!
//! Everything that is not a plain public unicast address is refused: loopback, private ranges,
//! link-local (including the cloud metadata address 169.254.169.254), multicast, unspecified,
//! broadcast, shared address space (CGNAT), documentation, benchmarking and reserved ranges.
//! IPv6 addresses that embed an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64, 6to4) are
//! judged by the IPv4 address they embed; Teredo is refused outright. An explicit allow-list
//! (for development and tests) overrides all of this.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::SsrfError;

/// Why an address was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// `0.0.0.0/8`, `::`.
    Unspecified,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918 ranges (`10/8`, `172.16/12`, `192.168/16`) and IPv6 unique local `fc00::/7`.
    Private,
    /// `169.254/16` (including the metadata service 169.254.169.254), `fe80::/10`.
    LinkLocal,
    /// `224/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// Shared address space (carrier-grade NAT) `100.64/10`.
    SharedAddressSpace,
    /// Documentation ranges (`192.0.2/24`, `198.51.100/24`, `203.0.113/24`, `2001:db8::/32`).
    Documentation,
    /// Benchmarking `198.18/15`.
    Benchmarking,
    /// Other special-purpose or reserved ranges (`192.0.0/24`, `240/4`, `fec0::/10`,
    /// IPv4-compatible and discard-only IPv6, local-use NAT64, Teredo).
    Reserved,
}

impl Refusal {
    /// The stable machine name of the reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Unspecified => "unspecified",
            Refusal::Loopback => "loopback",
            Refusal::Private => "private",
            Refusal::LinkLocal => "link_local",
            Refusal::Multicast => "multicast",
            Refusal::Broadcast => "broadcast",
            Refusal::SharedAddressSpace => "shared_address_space",
            Refusal::Documentation => "documentation",
            Refusal::Benchmarking => "benchmarking",
            Refusal::Reserved => "reserved",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The address policy of the guarded client: refuse every non-public address unless it lies in
/// the allow-list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SsrfPolicy {
    allow: Vec<IpNet>,
}

impl SsrfPolicy {
    /// A policy refusing every special-purpose address except those inside `allow`.
    ///
    /// An empty allow-list is the production setting. Tests and development use e.g.
    /// `127.0.0.0/8` and `::1/128`.
    pub fn new(allow: Vec<IpNet>) -> Self {
        Self { allow }
    }

    /// Parses a comma-separated allow-list such as `"127.0.0.0/8, ::1"`; a bare address means
    /// that single address. Empty entries are ignored.
    pub fn parse_allow_list(list: &str) -> Result<Vec<IpNet>, SsrfError> {
        list.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| SsrfError::InvalidAllowEntry(entry.to_owned()))
            })
            .collect()
    }

    /// The allow-list this policy was built with.
    pub fn allow_list(&self) -> &[IpNet] {
        &self.allow
    }

    /// Whether `ip` may be dialled: `Ok` for public unicast addresses and for addresses inside
    /// the allow-list, [`SsrfError::Refused`] otherwise.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), SsrfError> {
        if self.allow.iter().any(|net| net.contains(&ip)) {
            return Ok(());
        }
        match ip {
            IpAddr::V4(v4) => match classify_v4(v4) {
                None => Ok(()),
                Some(reason) => Err(SsrfError::Refused { ip, reason }),
            },
            IpAddr::V6(v6) => match classify_v6(v6) {
                V6Class::Public => Ok(()),
                V6Class::Refused(reason) => Err(SsrfError::Refused { ip, reason }),
                // Judge the embedded IPv4 address (the allow-list applies to it too), but report
                // the address actually given.
                V6Class::Embeds(v4) => self.check_ip(IpAddr::V4(v4)).map_err(|err| match err {
                    SsrfError::Refused { reason, .. } => SsrfError::Refused { ip, reason },
                    other => other,
                }),
            },
        }
    }
}

/// The refusal reason for a special-purpose IPv4 address, `None` for a public one.
fn classify_v4(ip: Ipv4Addr) -> Option<Refusal> {
    let [a, b, c, _] = ip.octets();
    let reason = if a == 0 {
        Refusal::Unspecified
    } else if a == 127 {
        Refusal::Loopback
    } else if a == 10 || (a == 172 && (16..=31).contains(&b)) || (a == 192 && b == 168) {
        Refusal::Private
    } else if a == 169 && b == 254 {
        Refusal::LinkLocal
    } else if a == 100 && (64..=127).contains(&b) {
        Refusal::SharedAddressSpace
    } else if ip.is_broadcast() {
        Refusal::Broadcast
    } else if (224..=239).contains(&a) {
        Refusal::Multicast
    } else if a >= 240 {
        Refusal::Reserved
    } else if (a == 192 && b == 0 && c == 2)
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
    {
        Refusal::Documentation
    } else if a == 198 && (b == 18 || b == 19) {
        Refusal::Benchmarking
    } else if a == 192 && b == 0 && c == 0 {
        Refusal::Reserved
    } else {
        return None;
    };
    Some(reason)
}

enum V6Class {
    Public,
    Refused(Refusal),
    /// The address carries an IPv4 address that decides.
    Embeds(Ipv4Addr),
}

fn classify_v6(ip: Ipv6Addr) -> V6Class {
    let seg = ip.segments();
    let embedded_low = || {
        let [.., a, b, c, d] = ip.octets();
        Ipv4Addr::new(a, b, c, d)
    };
    if ip.is_unspecified() {
        V6Class::Refused(Refusal::Unspecified)
    } else if ip.is_loopback() {
        V6Class::Refused(Refusal::Loopback)
    } else if seg[..5] == [0, 0, 0, 0, 0] && seg[5] == 0xffff {
        // IPv4-mapped ::ffff:a.b.c.d
        V6Class::Embeds(embedded_low())
    } else if seg[..6] == [0, 0, 0, 0, 0, 0] {
        // IPv4-compatible ::a.b.c.d (deprecated) and the rest of ::/96.
        V6Class::Refused(Refusal::Reserved)
    } else if seg[..4] == [0, 0, 0, 0] && seg[4] == 0xffff && seg[5] == 0 {
        // IPv4-translated ::ffff:0:a.b.c.d (SIIT)
        V6Class::Embeds(embedded_low())
    } else if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        // NAT64 well-known prefix 64:ff9b::/96
        V6Class::Embeds(embedded_low())
    } else if seg[0] == 0x64 && seg[1] == 0xff9b && seg[2] == 1 {
        // Local-use NAT64 64:ff9b:1::/48
        V6Class::Refused(Refusal::Reserved)
    } else if seg[0] == 0x2002 {
        // 6to4 2002:a.b.c.d::/48
        let [hi, lo] = [seg[1].to_be_bytes(), seg[2].to_be_bytes()];
        V6Class::Embeds(Ipv4Addr::new(hi[0], hi[1], lo[0], lo[1]))
    } else if seg[0] == 0x2001 && seg[1] == 0 {
        // Teredo 2001::/32: the embedded address is obfuscated, refuse.
        V6Class::Refused(Refusal::Reserved)
    } else if seg[0] == 0x2001 && seg[1] == 0x0db8 {
        V6Class::Refused(Refusal::Documentation)
    } else if seg[..4] == [0x100, 0, 0, 0] {
        // Discard-only 100::/64
        V6Class::Refused(Refusal::Reserved)
    } else if seg[0] & 0xfe00 == 0xfc00 {
        V6Class::Refused(Refusal::Private)
    } else if seg[0] & 0xffc0 == 0xfe80 {
        V6Class::Refused(Refusal::LinkLocal)
    } else if seg[0] & 0xffc0 == 0xfec0 {
        // Deprecated site-local fec0::/10
        V6Class::Refused(Refusal::Reserved)
    } else if seg[0] & 0xff00 == 0xff00 {
        V6Class::Refused(Refusal::Multicast)
    } else {
        V6Class::Public
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(policy: &SsrfPolicy, ip: &str) -> Option<Refusal> {
        let ip: IpAddr = ip.parse().expect("test address parses");
        match policy.check_ip(ip) {
            Ok(()) => None,
            Err(SsrfError::Refused { reason, ip: got }) => {
                assert_eq!(got, ip, "the refused address is the one given");
                Some(reason)
            }
            Err(other) => panic!("unexpected error {other}"),
        }
    }

    #[test]
    fn default_policy_table() {
        let policy = SsrfPolicy::default();
        let table: &[(&str, Option<Refusal>)] = &[
            // public
            ("93.184.216.34", None),
            ("8.8.8.8", None),
            ("1.1.1.1", None),
            ("172.32.0.1", None),
            ("172.15.255.255", None),
            ("100.63.255.255", None),
            ("100.128.0.1", None),
            ("192.169.0.1", None),
            ("2606:4700::1", None),
            ("2a00:1450:4001:82a::200e", None),
            ("::ffff:93.184.216.34", None),
            ("64:ff9b::5db8:d822", None),
            ("2002:5db8:d822::1", None),
            // unspecified
            ("0.0.0.0", Some(Refusal::Unspecified)),
            ("0.1.2.3", Some(Refusal::Unspecified)),
            ("::", Some(Refusal::Unspecified)),
            // loopback
            ("127.0.0.1", Some(Refusal::Loopback)),
            ("127.255.255.254", Some(Refusal::Loopback)),
            ("::1", Some(Refusal::Loopback)),
            // private
            ("10.0.0.1", Some(Refusal::Private)),
            ("10.255.255.255", Some(Refusal::Private)),
            ("172.16.0.1", Some(Refusal::Private)),
            ("172.31.255.255", Some(Refusal::Private)),
            ("192.168.1.1", Some(Refusal::Private)),
            ("fc00::1", Some(Refusal::Private)),
            ("fd12:3456::1", Some(Refusal::Private)),
            // link-local
            ("169.254.169.254", Some(Refusal::LinkLocal)),
            ("169.254.0.1", Some(Refusal::LinkLocal)),
            ("fe80::1", Some(Refusal::LinkLocal)),
            ("febf::1", Some(Refusal::LinkLocal)),
            // multicast, broadcast, reserved
            ("224.0.0.1", Some(Refusal::Multicast)),
            ("239.255.255.250", Some(Refusal::Multicast)),
            ("ff02::1", Some(Refusal::Multicast)),
            ("255.255.255.255", Some(Refusal::Broadcast)),
            ("240.0.0.1", Some(Refusal::Reserved)),
            ("192.0.0.8", Some(Refusal::Reserved)),
            ("fec0::1", Some(Refusal::Reserved)),
            // CGNAT
            ("100.64.0.1", Some(Refusal::SharedAddressSpace)),
            ("100.127.255.255", Some(Refusal::SharedAddressSpace)),
            // documentation, benchmarking
            ("192.0.2.1", Some(Refusal::Documentation)),
            ("198.51.100.7", Some(Refusal::Documentation)),
            ("203.0.113.9", Some(Refusal::Documentation)),
            ("2001:db8::1", Some(Refusal::Documentation)),
            ("198.18.0.1", Some(Refusal::Benchmarking)),
            // IPv4 embedded in IPv6
            ("::ffff:127.0.0.1", Some(Refusal::Loopback)),
            ("::ffff:7f00:1", Some(Refusal::Loopback)),
            ("::ffff:10.0.0.1", Some(Refusal::Private)),
            ("::ffff:169.254.169.254", Some(Refusal::LinkLocal)),
            ("::ffff:0:127.0.0.1", Some(Refusal::Loopback)),
            ("::127.0.0.1", Some(Refusal::Reserved)),
            ("64:ff9b::7f00:1", Some(Refusal::Loopback)),
            ("64:ff9b::a9fe:a9fe", Some(Refusal::LinkLocal)),
            ("64:ff9b:1::1", Some(Refusal::Reserved)),
            ("2002:7f00:1::1", Some(Refusal::Loopback)),
            ("2002:c0a8:101::1", Some(Refusal::Private)),
            ("2001:0:4136:e378::1", Some(Refusal::Reserved)),
            ("100::1", Some(Refusal::Reserved)),
        ];
        for (ip, want) in table {
            assert_eq!(refused(&policy, ip), *want, "address {ip}");
        }
    }

    #[test]
    fn allow_list_overrides() {
        let allow = SsrfPolicy::parse_allow_list("127.0.0.0/8, ::1").expect("valid list");
        let policy = SsrfPolicy::new(allow);
        assert_eq!(refused(&policy, "127.0.0.1"), None);
        assert_eq!(refused(&policy, "127.3.4.5"), None);
        assert_eq!(refused(&policy, "::1"), None);
        assert_eq!(refused(&policy, "::ffff:127.0.0.1"), None);
        assert_eq!(refused(&policy, "10.0.0.1"), Some(Refusal::Private));
        assert_eq!(
            refused(&policy, "169.254.169.254"),
            Some(Refusal::LinkLocal)
        );
        assert_eq!(refused(&policy, "::2"), Some(Refusal::Reserved));
        assert_eq!(refused(&policy, "93.184.216.34"), None);
    }

    #[test]
    fn allow_list_parsing() {
        assert_eq!(SsrfPolicy::parse_allow_list("").expect("empty"), vec![]);
        assert_eq!(
            SsrfPolicy::parse_allow_list("10.1.0.0/16,,fd00::/8")
                .expect("valid")
                .len(),
            2
        );
        assert!(matches!(
            SsrfPolicy::parse_allow_list("10.1.0.0/16,nonsense"),
            Err(SsrfError::InvalidAllowEntry(entry)) if entry == "nonsense"
        ));
    }
}
