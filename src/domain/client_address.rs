use std::fmt;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv6Net};

/// The address a request comes from: the TCP peer, or the client a trusted
/// proxy names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddress(IpAddr);

/// IPv6 clients are counted by network: one host usually holds a whole /64.
const IPV6_COUNTED_PREFIX: u8 = 64;

impl ClientAddress {
    /// The client behind `peer`. `X-Forwarded-For` (read from the right,
    /// skipping the hops that are trusted proxies) and then `X-Real-IP`
    /// count only when the peer itself is a trusted proxy: any client can
    /// send those headers.
    pub fn resolve(
        peer: IpAddr,
        forwarded_for: Option<&str>,
        real_ip: Option<&str>,
        trusted_proxies: &[IpNet],
    ) -> Self {
        let trusted = |ip: &IpAddr| trusted_proxies.iter().any(|net| net.contains(ip));
        let peer = peer.to_canonical();
        if !trusted(&peer) {
            return Self(peer);
        }
        let forwarded = forwarded_for.map(|list| {
            list.rsplit(',')
                .map(|hop| hop.trim().parse::<IpAddr>().map(|ip| ip.to_canonical()))
                .find(|hop| !matches!(hop, Ok(ip) if trusted(ip)))
        });
        match forwarded {
            // The first hop no trusted proxy vouches for; one that is no
            // address at all is the header's last word, and unusable.
            Some(Some(Ok(client))) => Self(client),
            Some(Some(Err(_))) => Self(peer),
            // Every hop was a trusted proxy, or there was no header.
            Some(None) | None => real_ip
                .and_then(|raw| raw.trim().parse::<IpAddr>().ok())
                .map_or(Self(peer), |ip| Self(ip.to_canonical())),
        }
    }

    pub fn ip(&self) -> IpAddr {
        self.0
    }

    /// What failed attempts are counted under: the address itself, or its
    /// /64 network for IPv6.
    pub fn counted_as(&self) -> String {
        match self.0 {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => Ipv6Net::new(ip, IPV6_COUNTED_PREFIX)
                .map(|net| net.trunc().to_string())
                .unwrap_or_else(|_| ip.to_string()),
        }
    }
}

impl fmt::Display for ClientAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(raw: &str) -> IpAddr {
        raw.parse().expect("an address")
    }

    fn nets(raw: &[&str]) -> Vec<IpNet> {
        raw.iter().map(|net| net.parse().expect("a CIDR")).collect()
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client_whatever_the_headers_say() {
        let client = ClientAddress::resolve(ip("127.0.0.9"), Some("1.2.3.4"), Some("5.6.7.8"), &[]);
        assert_eq!(client.ip(), ip("127.0.0.9"));
    }

    #[test]
    fn a_trusted_proxy_names_the_client_in_x_forwarded_for() {
        let proxies = nets(&["10.0.0.0/8"]);
        let client = ClientAddress::resolve(ip("10.0.0.2"), Some("1.2.3.4"), None, &proxies);
        assert_eq!(client.ip(), ip("1.2.3.4"));
    }

    #[test]
    fn x_forwarded_for_is_read_from_the_right_skipping_trusted_hops() {
        let proxies = nets(&["10.0.0.0/8"]);
        let header = "6.6.6.6, 1.2.3.4, 10.0.0.7";
        let client = ClientAddress::resolve(ip("10.0.0.2"), Some(header), None, &proxies);
        assert_eq!(
            client.ip(),
            ip("1.2.3.4"),
            "the forged left entry is ignored"
        );
    }

    #[test]
    fn a_trusted_proxy_may_name_the_client_in_x_real_ip() {
        let proxies = nets(&["10.0.0.0/8"]);
        let client = ClientAddress::resolve(ip("10.0.0.2"), None, Some("1.2.3.4"), &proxies);
        assert_eq!(client.ip(), ip("1.2.3.4"));
    }

    #[test]
    fn garbage_in_the_header_leaves_the_peer() {
        let proxies = nets(&["10.0.0.0/8"]);
        let client = ClientAddress::resolve(ip("10.0.0.2"), Some("nonsense"), None, &proxies);
        assert_eq!(client.ip(), ip("10.0.0.2"));
    }

    #[test]
    fn ipv6_clients_count_by_their_64_network() {
        let one = ClientAddress::resolve(ip("2001:db8:1:2::1"), None, None, &[]);
        let other = ClientAddress::resolve(ip("2001:db8:1:2:ffff::9"), None, None, &[]);
        assert_eq!(one.counted_as(), "2001:db8:1:2::/64");
        assert_eq!(one.counted_as(), other.counted_as());
        let v4 = ClientAddress::resolve(ip("::ffff:192.0.2.1"), None, None, &[]);
        assert_eq!(v4.counted_as(), "192.0.2.1");
    }
}
