//! Who the client is when the server sits behind reverse proxies. The TCP peer is the only
//! address nobody can forge; `X-Forwarded-For` is believed only when that peer is one of the
//! configured trusted proxies (`--trusted-proxy`), and then read from the right, the way
//! nginx's `real_ip_recursive` does: each proxy appends the address it saw, so the
//! rightmost entry that is not itself a trusted proxy is the client. Entries further left
//! were written by the client and prove nothing.
//!
//! `X-Real-IP` and `Forwarded` (RFC 7239) are ignored on purpose: one header, one rule.

use ipnet::IpNet;
use std::net::IpAddr;

/// The trusted proxies: single addresses and CIDR ranges, IPv4 or IPv6.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// Parses a comma-separated list such as `127.0.0.1,10.0.0.0/8,::1`. An empty list
    /// trusts no one.
    pub fn parse(list: &str) -> Result<TrustedProxies, String> {
        let mut nets = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let net = match item.parse::<IpNet>() {
                Ok(net) => net.trunc(),
                Err(_) => match item.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(canonical(ip)),
                    Err(_) => {
                        return Err(format!(
                            "trusted proxy `{item}` is neither an IP address nor a CIDR range \
                             such as 10.0.0.0/8"
                        ))
                    }
                },
            };
            nets.push(net);
        }
        Ok(TrustedProxies { nets })
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The client's address. `forwarded` holds the values of every `X-Forwarded-For` header
    /// line, in order; several lines count as one comma-joined list.
    pub fn client_ip<'a>(&self, peer: IpAddr, forwarded: impl Iterator<Item = &'a str>) -> IpAddr {
        let peer = canonical(peer);
        if !self.contains(peer) {
            return peer;
        }
        let entries: Vec<&str> = forwarded.flat_map(|v| v.split(',')).collect();
        let mut leftmost = None;
        for entry in entries.iter().rev() {
            let Ok(ip) = entry.trim().parse::<IpAddr>() else {
                // Not what a proxy writes: believe nobody rather than guess.
                return peer;
            };
            let ip = canonical(ip);
            if !self.contains(ip) {
                return ip;
            }
            leftmost = Some(ip);
        }
        // Every hop is a trusted proxy (say, a health check from the proxy host itself).
        leftmost.unwrap_or(peer)
    }

    /// For the start-up log line.
    pub fn describe(&self) -> String {
        let list: Vec<String> = self.nets.iter().map(IpNet::to_string).collect();
        list.join(", ")
    }
}

/// An IPv4 client of a dual-stack socket shows up as `::ffff:a.b.c.d`; compare and log it
/// as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// Who counts as one client for the per-client limits: an IPv4 address, or an IPv6
/// address's /64, the smallest network one subscriber is given (one host may take any
/// address in it, so counting single addresses would count nothing).
pub fn client_network(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(a) => IpAddr::V6(std::net::Ipv6Addr::from(
            u128::from(a) & !(u64::MAX as u128),
        )),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn client(t: &TrustedProxies, peer: &str, xff: &[&str]) -> IpAddr {
        t.client_ip(ip(peer), xff.iter().copied())
    }

    #[test]
    fn parses_addresses_and_ranges() {
        let t = TrustedProxies::parse(" 127.0.0.1, 10.0.0.0/8,::1,fd00::/8 ,").unwrap();
        assert!(t.contains(ip("127.0.0.1")));
        assert!(!t.contains(ip("127.0.0.2")));
        assert!(t.contains(ip("10.200.1.1")));
        assert!(t.contains(ip("::1")));
        assert!(t.contains(ip("fd00::7")));
        assert!(
            t.contains(ip("::ffff:10.1.2.3")),
            "v4-mapped peers match v4 ranges"
        );
        assert!(!t.contains(ip("192.0.2.1")));
        assert!(TrustedProxies::parse("").unwrap().is_empty());
        // A range written with host bits set means the network.
        assert!(TrustedProxies::parse("10.1.2.3/8")
            .unwrap()
            .contains(ip("10.9.9.9")));
        for bad in ["localhost", "10.0.0.0/33", "1.2.3", "10.0.0.1:80"] {
            assert!(TrustedProxies::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_for_is_ignored_from_an_untrusted_peer() {
        let t = TrustedProxies::parse("10.0.0.1").unwrap();
        assert_eq!(client(&t, "192.0.2.9", &["203.0.113.5"]), ip("192.0.2.9"));
        let none = TrustedProxies::default();
        assert_eq!(
            client(&none, "127.0.0.1", &["203.0.113.5"]),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn the_rightmost_untrusted_entry_is_the_client() {
        let t = TrustedProxies::parse("10.0.0.0/8").unwrap();
        assert_eq!(client(&t, "10.0.0.1", &["203.0.113.5"]), ip("203.0.113.5"));
        // A client-written entry on the left is skipped.
        assert_eq!(
            client(&t, "10.0.0.1", &["198.51.100.66, 203.0.113.5"]),
            ip("203.0.113.5")
        );
        // Proxies in the chain are skipped.
        assert_eq!(
            client(
                &t,
                "10.0.0.1",
                &["198.51.100.66, 203.0.113.5, 10.3.3.3,10.2.2.2"]
            ),
            ip("203.0.113.5")
        );
        // Several header lines are one list.
        assert_eq!(
            client(&t, "10.0.0.1", &["198.51.100.66", "203.0.113.5, 10.2.2.2"]),
            ip("203.0.113.5")
        );
        // Only proxies: the leftmost; no header: the peer.
        assert_eq!(
            client(&t, "10.0.0.1", &["10.5.5.5, 10.2.2.2"]),
            ip("10.5.5.5")
        );
        assert_eq!(client(&t, "10.0.0.1", &[]), ip("10.0.0.1"));
        // IPv6 and v4-mapped entries.
        assert_eq!(client(&t, "10.0.0.1", &["2001:db8::1"]), ip("2001:db8::1"));
        assert_eq!(
            client(&t, "::ffff:10.0.0.1", &["::ffff:203.0.113.5"]),
            ip("203.0.113.5")
        );
    }

    #[test]
    fn a_malformed_entry_means_the_peer() {
        let t = TrustedProxies::parse("10.0.0.0/8").unwrap();
        for xff in [
            "unknown",
            "203.0.113.5:4711",
            "203.0.113.5, ",
            "203.0.113.5,,10.2.2.2",
            "",
            "[2001:db8::1]",
        ] {
            assert_eq!(client(&t, "10.0.0.1", &[xff]), ip("10.0.0.1"), "{xff:?}");
        }
        // Garbage left of the client is never read.
        assert_eq!(
            client(&t, "10.0.0.1", &["garbage, 203.0.113.5"]),
            ip("203.0.113.5")
        );
    }

    #[test]
    fn a_client_is_an_ipv4_address_or_an_ipv6_64() {
        let n = |s: &str| client_network(s.parse().unwrap()).to_string();
        assert_eq!(n("192.0.2.7"), "192.0.2.7");
        assert_eq!(n("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(n("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
        assert_eq!(n("2001:db8:1:2::1"), n("2001:db8:1:2:ffff::9"));
    }
}
