//! Where orch's own HTTP requests to user-listed hosts may land: the
//! address spaces a listed *name* must not resolve into (loopback,
//! link-local, private, unspecified) unless the address itself is listed,
//! and the resolution that checks them. Shared by every allow-list orch
//! applies (`tools.http.allow`, plugins' `fetch` grants), so a name that
//! points at the machine or its network is refused the same way everywhere;
//! and the steps every such request shares: the next hop of a redirect, a
//! body read up to a cap.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use url::Url;

use crate::config::HostPattern;

/// Which internal address space `ip` lies in, or `None` for a public
/// address. IPv4 addresses inside IPv6 (mapped, compatible, NAT64 is not
/// among them) are judged as the IPv4 address they carry.
pub fn internal_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => internal_v4(v4),
            None => internal_v6(v6),
        },
    }
}

fn internal_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) {
        // 100.64.0.0/10: carrier-grade NAT, private in all but name.
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if ip.is_broadcast() {
        Some("broadcast")
    } else {
        None
    }
}

fn internal_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if first & 0xfe00 == 0xfc00 {
        // fc00::/7, unique local: IPv6's private space.
        Some("private")
    } else if first & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if let Some(v4) = compatible_v4(ip) {
        internal_v4(v4)
    } else {
        None
    }
}

/// The IPv4 address of a deprecated IPv4-compatible IPv6 address (`::a.b.c.d`).
fn compatible_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let segments = ip.segments();
    segments[..6].iter().all(|segment| *segment == 0).then(|| {
        let [.., a, b, c, d] = ip.octets();
        Ipv4Addr::new(a, b, c, d)
    })
}

/// Whether `allow` lists the address `ip` itself for `port` (an entry such
/// as `10.0.0.5` or `10.0.0.5:8080`), as opposed to a name resolving to it.
pub fn lists_address(allow: &[HostPattern], ip: IpAddr, port: u16) -> bool {
    let host = match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    Url::parse(&format!("http://{host}:{port}/"))
        .is_ok_and(|url| allow.iter().any(|pattern| pattern.matches(&url)))
}

/// The addresses to connect to for `url`, whose host `allow` admits: a
/// literal address as it is, a name resolved now, refused when any address
/// it resolves to is internal and not itself listed (a listed public name
/// must not become a way into the machine or its network). `key` names the
/// allow-list in the message. Callers connect only to what this returns, so
/// a second lookup cannot answer differently.
pub async fn resolve_checked(
    allow: &[HostPattern],
    url: &Url,
    key: &str,
) -> Result<Vec<SocketAddr>, String> {
    let port = url
        .port_or_known_default()
        .ok_or_else(|| format!("{url} has no port"))?;
    let host = match url.host() {
        Some(url::Host::Ipv4(ip)) => return Ok(vec![SocketAddr::new(ip.into(), port)]),
        Some(url::Host::Ipv6(ip)) => return Ok(vec![SocketAddr::new(ip.into(), port)]),
        Some(url::Host::Domain(name)) => name.to_string(),
        None => return Err(format!("{url} has no host")),
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|err| format!("{host} could not be resolved: {err}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("{host} resolves to no address"));
    }
    for addr in &addrs {
        if let Some(kind) = internal_kind(addr.ip())
            && !lists_address(allow, addr.ip(), port)
        {
            return Err(format!(
                "refused: {host} resolves to {ip}, a {kind} address; list \"{ip}\" itself in {key} to allow it",
                ip = addr.ip()
            ));
        }
    }
    Ok(addrs)
}

/// Where the redirect `response` to a request for `url` sends the next
/// hop; `Ok(None)` when it is not a redirect (or names no Location). A
/// redirect from https to plain http is refused. Callers check the next
/// hop against their list before sending it.
pub fn redirect(url: &Url, response: &reqwest::Response) -> Result<Option<Url>, String> {
    if !response.status().is_redirection() {
        return Ok(None);
    }
    let Some(location) = response.headers().get(reqwest::header::LOCATION) else {
        return Ok(None);
    };
    let location = location
        .to_str()
        .map_err(|_| format!("{url}: a redirect with an unreadable Location header"))?;
    let next = url
        .join(location)
        .map_err(|err| format!("{url}: a redirect to an invalid URL {location:?} ({err})"))?;
    if url.scheme() == "https" && next.scheme() == "http" {
        return Err(format!("{url} redirects from https to plain http ({next})"));
    }
    Ok(Some(next))
}

/// The body of `response` read up to `cap` bytes, and whether it went on
/// past them; a character the cap split in two is left out whole rather
/// than replaced (which would grow the text past the cap). The rest is
/// never read.
pub async fn capped_body(
    url: &Url,
    response: &mut reqwest::Response,
    cap: usize,
) -> Result<(String, bool), String> {
    let mut body = Vec::new();
    let mut cut = false;
    while let Some(chunk) = response.chunk().await.map_err(|err| {
        format!(
            "{url}: reading the body failed: {}",
            crate::provider::error_chain(&err)
        )
    })? {
        let room = cap - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            cut = true;
            break;
        }
        body.extend_from_slice(&chunk);
    }
    if cut
        && let Err(err) = std::str::from_utf8(&body)
        && err.error_len().is_none()
    {
        body.truncate(err.valid_up_to());
    }
    Ok((String::from_utf8_lossy(&body).into_owned(), cut))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_spaces_are_named_and_public_ones_pass() {
        let cases = [
            ("127.0.0.1", Some("loopback")),
            ("127.8.9.1", Some("loopback")),
            ("0.0.0.0", Some("unspecified")),
            ("0.1.2.3", Some("unspecified")),
            ("10.1.2.3", Some("private")),
            ("172.16.0.1", Some("private")),
            ("192.168.1.1", Some("private")),
            ("100.64.0.1", Some("private")),
            ("169.254.169.254", Some("link-local")),
            ("255.255.255.255", Some("broadcast")),
            ("::1", Some("loopback")),
            ("::", Some("unspecified")),
            ("fd00::1", Some("private")),
            ("fe80::1", Some("link-local")),
            ("::ffff:127.0.0.1", Some("loopback")),
            ("::ffff:169.254.169.254", Some("link-local")),
            ("::10.0.0.1", Some("private")),
            ("93.184.216.34", None),
            ("100.128.0.1", None),
            ("172.32.0.1", None),
            ("2606:4700::1111", None),
            ("::ffff:8.8.8.8", None),
        ];
        for (ip, expected) in cases {
            assert_eq!(internal_kind(ip.parse().unwrap()), expected, "{ip}");
        }
    }

    #[test]
    fn an_address_counts_as_listed_only_itself() {
        let allow = [
            HostPattern::parse("example.com").unwrap(),
            HostPattern::parse("10.0.0.5").unwrap(),
            HostPattern::parse("127.0.0.1:9000").unwrap(),
            HostPattern::parse("[::1]").unwrap(),
        ];
        assert!(lists_address(&allow, "10.0.0.5".parse().unwrap(), 80));
        assert!(lists_address(&allow, "127.0.0.1".parse().unwrap(), 9000));
        assert!(!lists_address(&allow, "127.0.0.1".parse().unwrap(), 9001));
        assert!(lists_address(&allow, "::1".parse().unwrap(), 443));
        assert!(!lists_address(&allow, "10.0.0.6".parse().unwrap(), 80));
    }

    #[tokio::test]
    async fn a_listed_name_resolving_to_loopback_is_refused_unless_the_address_is_listed() {
        let url = Url::parse("http://localhost:9000/").unwrap();
        let named = [HostPattern::parse("localhost").unwrap()];
        let err = resolve_checked(&named, &url, "tools.http.allow")
            .await
            .unwrap_err();
        assert!(err.contains("a loopback address"), "{err}");
        assert!(err.contains("tools.http.allow"), "{err}");
        let both = [
            HostPattern::parse("localhost").unwrap(),
            HostPattern::parse("127.0.0.1:9000").unwrap(),
            HostPattern::parse("[::1]:9000").unwrap(),
        ];
        let addrs = resolve_checked(&both, &url, "tools.http.allow")
            .await
            .unwrap();
        assert!(
            addrs.iter().all(|addr| addr.ip().is_loopback()),
            "{addrs:?}"
        );
        let literal = Url::parse("http://127.0.0.1:9000/").unwrap();
        assert_eq!(
            resolve_checked(&both, &literal, "tools.http.allow")
                .await
                .unwrap(),
            vec!["127.0.0.1:9000".parse().unwrap()]
        );
    }
}
