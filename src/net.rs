//! Where orch's requests for agents and plugins may land, and the steps
//! they share. A name on a user's allow-list (`tools.http.allow`, a
//! plugin's `fetch` grant) is resolved through `GuardedResolver`, which
//! drops internal addresses (loopback, link-local and the cloud metadata
//! address, private ranges, carrier-grade NAT, unspecified, and their
//! IPv4-inside-IPv6 forms) unless the caller allows them — the address
//! checked is the address connected to, on every hop, even if the name's DNS
//! answer changes between two lookups. The shared steps: a redirect's next
//! hop (https never to http) and a body read up to a cap.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

/// Why `ip` is internal (`loopback`, `link-local`, `private`,
/// `carrier-grade NAT`, `unspecified`), or `None` for a public address.
/// IPv4 addresses inside IPv6 (mapped `::ffff:a.b.c.d`, compatible
/// `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`) are judged as the IPv4 address.
pub fn internal(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => internal_v6(v6),
    }
}

fn internal_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    Some(match (a, b) {
        (0, _) => "unspecified",
        (127, _) => "loopback",
        (10, _) | (192, 168) => "private",
        (172, 16..=31) => "private",
        // 169.254.169.254 is where clouds serve instance credentials.
        (169, 254) => "link-local",
        (100, 64..=127) => "carrier-grade NAT",
        _ => return None,
    })
}

fn internal_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    let segments = ip.segments();
    let embedded = |segments: &[u16]| {
        Ipv4Addr::new(
            (segments[6] >> 8) as u8,
            segments[6] as u8,
            (segments[7] >> 8) as u8,
            segments[7] as u8,
        )
    };
    match segments {
        // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, deprecated).
        [0, 0, 0, 0, 0, 0xffff, ..] | [0, 0, 0, 0, 0, 0, ..] => {
            return internal_v4(embedded(&segments));
        }
        // NAT64's well-known prefix carries an IPv4 address too.
        [0x64, 0xff9b, 0, 0, 0, 0, ..] => return internal_v4(embedded(&segments)),
        _ => {}
    }
    match segments[0] {
        0xfc00..=0xfdff => Some("private"),
        0xfe80..=0xfebf => Some("link-local"),
        // Site-local, deprecated but still routed inside some networks.
        0xfec0..=0xfeff => Some("private"),
        _ => None,
    }
}

/// A name resolved only to internal addresses that are not allowed.
#[derive(Debug)]
pub struct Refused {
    pub name: String,
    /// Each address found, with why it is internal.
    pub addresses: Vec<(IpAddr, &'static str)>,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let found: Vec<String> = self
            .addresses
            .iter()
            .map(|(ip, class)| format!("{ip} ({class})"))
            .collect();
        write!(
            f,
            "{} resolves to internal addresses only: {}",
            self.name,
            found.join(", ")
        )
    }
}

impl std::error::Error for Refused {}

/// A reqwest resolver that looks names up with the system resolver and
/// keeps only public addresses and the internal ones `allow` admits.
/// `reqwest::ClientBuilder::dns_resolver` installs it; IP-literal URLs
/// never reach a resolver, so the caller checks those itself.
#[derive(Clone)]
pub struct GuardedResolver {
    allow: Arc<dyn Fn(IpAddr) -> bool + Send + Sync>,
}

impl GuardedResolver {
    /// `allow` decides for an internal address; public ones always pass.
    pub fn new(allow: impl Fn(IpAddr) -> bool + Send + Sync + 'static) -> GuardedResolver {
        GuardedResolver {
            allow: Arc::new(allow),
        }
    }

    /// Keep the addresses that may be connected to.
    pub fn filter(&self, name: &str, found: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, Refused> {
        let mut kept = Vec::new();
        let mut refused = Vec::new();
        for addr in found {
            match internal(addr.ip()) {
                Some(class) if !(self.allow)(addr.ip()) => refused.push((addr.ip(), class)),
                _ => kept.push(addr),
            }
        }
        if kept.is_empty() && !refused.is_empty() {
            return Err(Refused {
                name: name.to_string(),
                addresses: refused,
            });
        }
        Ok(kept)
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept = guard.filter(&host, found)?;
            let addrs: Addrs = Box::new(kept.into_iter());
            Ok(addrs)
        })
    }
}

/// Headers a caller (a model, a plugin) may not set on a request orch
/// sends: the client sets them itself, and `host` would steer a listed
/// server or proxy to another virtual host.
pub const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "proxy-authorization",
    "proxy-connection",
];

/// Whether `name` (any case) is one of [`RESERVED_HEADERS`].
pub fn reserved_header(name: &str) -> bool {
    RESERVED_HEADERS
        .iter()
        .any(|reserved| reserved.eq_ignore_ascii_case(name.trim()))
}

/// The refusal inside a failed request's error chain, if the guarded
/// resolver is why it failed.
pub fn refused_in(err: &reqwest::Error) -> Option<&Refused> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<Refused>() {
            return Some(refused);
        }
        source = cause.source();
    }
    None
}

/// Redirects a request orch sends for an agent or a plugin follows before
/// giving up.
pub const MAX_REDIRECTS: usize = 5;

impl Refused {
    /// The allow-list entry that would admit the first address refused, on
    /// `port` (for the message that says what to add).
    pub fn entry(&self, port: u16) -> String {
        self.addresses
            .first()
            .map(|(ip, _)| entry(*ip, port))
            .unwrap_or_default()
    }
}

/// `ip:port` as an allow-list entry names it (`[::1]:8080` for IPv6).
pub fn entry(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
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
    fn internal_addresses_are_named_and_public_ones_pass() {
        let cases = [
            ("127.0.0.1", Some("loopback")),
            ("127.8.9.10", Some("loopback")),
            ("::1", Some("loopback")),
            ("10.1.2.3", Some("private")),
            ("172.16.0.1", Some("private")),
            ("172.31.255.255", Some("private")),
            ("172.32.0.1", None),
            ("192.168.1.1", Some("private")),
            ("169.254.169.254", Some("link-local")),
            ("100.64.0.1", Some("carrier-grade NAT")),
            ("100.127.255.255", Some("carrier-grade NAT")),
            ("100.128.0.1", None),
            ("0.0.0.0", Some("unspecified")),
            ("::", Some("unspecified")),
            ("fc00::1", Some("private")),
            ("fd12:3456::1", Some("private")),
            ("fe80::1", Some("link-local")),
            ("::ffff:127.0.0.1", Some("loopback")),
            ("::ffff:169.254.169.254", Some("link-local")),
            ("::ffff:10.0.0.1", Some("private")),
            ("::ffff:8.8.8.8", None),
            ("64:ff9b::192.168.0.1", Some("private")),
            ("8.8.8.8", None),
            ("1.1.1.1", None),
            ("2606:4700::1111", None),
        ];
        for (text, class) in cases {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(internal(ip), class, "{text}");
        }
    }

    #[test]
    fn the_resolver_keeps_public_and_allowed_addresses() {
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        let guard = GuardedResolver::new(|_| false);
        let addr = |text: &str| SocketAddr::new(text.parse().unwrap(), 0);
        let err = guard
            .filter("localhost", vec![addr("127.0.0.1"), addr("::1")])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "localhost resolves to internal addresses only: 127.0.0.1 (loopback), ::1 (loopback)"
        );
        // A name with a public and a private address connects only to the public one.
        assert_eq!(
            guard
                .filter("mixed", vec![addr("10.0.0.1"), addr("93.184.216.34")])
                .unwrap(),
            [addr("93.184.216.34")]
        );
        let allowing = GuardedResolver::new(move |ip| ip == loopback);
        assert_eq!(
            allowing
                .filter("localhost", vec![addr("127.0.0.1"), addr("::1")])
                .unwrap(),
            [addr("127.0.0.1")]
        );
    }
}
