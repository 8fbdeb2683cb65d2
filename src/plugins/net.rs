//! The contract's `net` import: plugins fetch URLs through the host, which
//! reaches only the hosts the user allow-listed for that plugin file
//! (`plugins.grants.<file>.fetch`). Deny by default: a plugin with no list
//! reaches nothing. Every hop of a redirect is checked against the list, and
//! every name is resolved through `net::GuardedResolver`, so a
//! listed name that resolves to an internal address (loopback, private,
//! link-local, the cloud metadata address) connects only if that address is
//! itself on the list. The headers the grant injects for a host (API keys
//! from the environment) are added here, win over the plugin's own, and are
//! redacted from what the response hands back. The body is cut at a byte cap
//! and the whole request runs under a time limit. A plugin never gets a
//! socket: WASI networking stays off in its sandbox.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, Url};

use crate::config::HostPattern;
use crate::net::GuardedResolver;
use crate::net::MAX_REDIRECTS;
use crate::provider::error_chain;

/// Clients kept (one per allow list and port); past this the cache starts over.
const MAX_CLIENTS: usize = 64;

/// Injected values shorter than this are not redacted (`1` would blank out
/// every digit of a body); no real key is that short.
const MIN_REDACTED: usize = 4;

/// Whether any entry of `allow` admits `url`.
pub fn allowed(allow: &[HostPattern], url: &Url) -> bool {
    allow.iter().any(|pattern| pattern.matches(url))
}

/// Headers the host adds to every request to one allow-listed host, with
/// their values read from the environment when the plugin loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injected {
    pub host: HostPattern,
    pub headers: Vec<(String, String)>,
    /// The values taken from the environment, redacted from responses.
    pub secrets: Vec<String>,
}

/// What one plugin may reach: its allow list and the headers injected for
/// its hosts.
#[derive(Debug, Clone, Default)]
pub struct Reach {
    pub allow: Arc<[HostPattern]>,
    pub inject: Arc<[Injected]>,
}

impl Reach {
    /// The length of the longest value injected for any host.
    fn longest_secret(&self) -> usize {
        self.inject
            .iter()
            .flat_map(|entry| entry.secrets.iter())
            .map(String::len)
            .max()
            .unwrap_or(0)
    }
}

/// A request a plugin asks for.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    pub max_bytes: u32,
}

/// What one fetch returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub status: u16,
    pub url: String,
    pub content_type: Option<String>,
    pub body: String,
    pub truncated: bool,
}

/// What a client is built for: an allow list and a port.
type ClientKey = (Arc<[HostPattern]>, u16);

/// The HTTP clients plugins share, with the host's caps: one per allow list
/// and port, since the resolver that guards addresses decides by both.
pub struct Fetcher {
    clients: Mutex<HashMap<ClientKey, reqwest::Client>>,
    max_bytes: usize,
    timeout: Duration,
}

/// One hop's request, as it goes out.
struct Hop {
    method: Method,
    headers: Vec<(String, String)>,
    body: Option<String>,
}

impl Fetcher {
    pub fn new(max_bytes: usize, timeout: Duration) -> Fetcher {
        Fetcher {
            clients: Mutex::default(),
            max_bytes,
            timeout,
        }
    }

    /// Built on the first request to `port` under `allow`: most runs have
    /// no plugin that fetches. Its resolver lets a name reach an internal
    /// address only when that address (on this port) is on the list.
    fn client(&self, allow: &Arc<[HostPattern]>, port: u16) -> Result<reqwest::Client, String> {
        let key = (allow.clone(), port);
        let mut clients = self.clients.lock().expect("clients lock");
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let list = allow.clone();
        let resolver = GuardedResolver::new(move |ip| list.iter().any(|p| p.is_address(ip, port)));
        let client = crate::provider::client_builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!(
                "orch/",
                env!("CARGO_PKG_VERSION"),
                " (plugin fetch)"
            ))
            .connect_timeout(self.timeout)
            // An environment proxy would resolve names itself, past the
            // guarded resolver.
            .no_proxy()
            .dns_resolver(resolver)
            .build()
            .map_err(|err| format!("the HTTP client could not start: {err}"))?;
        if clients.len() >= MAX_CLIENTS {
            clients.clear();
        }
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// GET `url` for the plugin `file` that may reach `reach`, keeping at
    /// most `max_bytes` of the body (never more than the host's cap).
    pub async fn fetch(
        &self,
        file: &str,
        reach: &Reach,
        url: &str,
        max_bytes: u32,
    ) -> Result<Fetched, String> {
        self.send(
            file,
            reach,
            Outgoing {
                method: "GET".into(),
                url: url.to_string(),
                headers: Vec::new(),
                body: None,
                max_bytes,
            },
        )
        .await
    }

    /// Send `request` for the plugin `file` that may reach `reach`.
    pub async fn send(
        &self,
        file: &str,
        reach: &Reach,
        request: Outgoing,
    ) -> Result<Fetched, String> {
        let url = request.url.as_str();
        let start = Url::parse(url)
            .map_err(|err| format!("fetch refused: {url:?} is not a valid URL ({err})"))?;
        let method = match request.method.to_ascii_uppercase().as_str() {
            "GET" => Method::GET,
            "POST" => Method::POST,
            "PUT" => Method::PUT,
            "PATCH" => Method::PATCH,
            "DELETE" => Method::DELETE,
            "HEAD" => Method::HEAD,
            other => {
                return Err(format!(
                    "request refused: method {other:?} is not one of GET, POST, PUT, PATCH, DELETE, HEAD"
                ));
            }
        };
        for (name, value) in &request.headers {
            if crate::net::reserved_header(name) {
                return Err(format!(
                    "request refused: the header {name:?} is set by the host"
                ));
            }
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err()
                || reqwest::header::HeaderValue::from_str(value).is_err()
            {
                return Err(format!(
                    "request refused: {name:?} is not a valid header name and value"
                ));
            }
        }
        let cap = (request.max_bytes as usize).min(self.max_bytes);
        let hop = Hop {
            method,
            headers: request.headers,
            body: request.body,
        };
        let work = self.follow(file, reach, start, hop, cap);
        let fetched = match tokio::time::timeout(self.timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "fetch of {url} timed out after {} ms",
                self.timeout.as_millis()
            )),
        };
        fetched.map(|fetched| redact(fetched, reach, cap))
    }

    async fn follow(
        &self,
        file: &str,
        reach: &Reach,
        mut url: Url,
        mut hop: Hop,
        cap: usize,
    ) -> Result<Fetched, String> {
        for _ in 0..=MAX_REDIRECTS {
            check(file, &reach.allow, &url)?;
            let port = url.port_or_known_default().unwrap_or(0);
            let injected: Vec<&(String, String)> = reach
                .inject
                .iter()
                .filter(|entry| entry.host.matches(&url) && private_channel(&url))
                .flat_map(|entry| entry.headers.iter())
                .collect();
            let mut builder = self
                .client(&reach.allow, port)?
                .request(hop.method.clone(), url.clone());
            for (name, value) in &hop.headers {
                if !injected
                    .iter()
                    .any(|(own, _)| own.eq_ignore_ascii_case(name))
                {
                    builder = builder.header(name, value);
                }
            }
            for (name, value) in &injected {
                builder = builder.header(name, value);
            }
            if let Some(body) = &hop.body {
                builder = builder.body(body.clone());
            }
            let mut response = builder
                .send()
                .await
                .map_err(|err| refusal(file, &url, &err))?;
            let status = response.status();
            if let Some(next) = crate::net::redirect(&url, &response)
                .map_err(|why| format!("fetch refused: {why}"))?
            {
                // 307 and 308 repeat the request; the others continue as a GET.
                if !matches!(status.as_u16(), 307 | 308) && hop.method != Method::HEAD {
                    hop.method = Method::GET;
                    hop.body = None;
                }
                // The plugin's own headers (its credentials) stay with the
                // host they were meant for.
                if next.host_str() != url.host_str()
                    || next.port_or_known_default() != url.port_or_known_default()
                {
                    hop.headers.clear();
                }
                url = next;
                continue;
            }
            let content_type = response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|value| value.to_str().ok())
                .map(str::to_string);
            // Read past the cap by the longest injected value, so a secret
            // the cap would split is whole when it is redacted (`redact`
            // cuts at the cap afterwards).
            let (body, truncated) =
                crate::net::capped_body(&url, &mut response, cap + reach.longest_secret())
                    .await
                    .map_err(|why| format!("fetch of {why}"))?;
            return Ok(Fetched {
                status: status.as_u16(),
                url: url.to_string(),
                content_type,
                body,
                truncated,
            });
        }
        Err(format!(
            "fetch gave up after {MAX_REDIRECTS} redirects (last: {url})"
        ))
    }
}

/// The message for a failed send: a refusal when the guarded resolver
/// refused the name's addresses, else the transport's error chain.
fn refusal(file: &str, url: &Url, err: &reqwest::Error) -> String {
    if let Some(refused) = crate::net::refused_in(err) {
        let example = refused.entry(url.port_or_known_default().unwrap_or(0));
        return format!(
            "fetch refused: {refused}; an internal address is reached only when it is itself on the hosts allowed for plugin \"{file}\" (add \"{example}\" to plugins.grants.\"{file}\".fetch in .opencode/orch.json to allow it)"
        );
    }
    format!("fetch of {url} failed: {}", error_chain(err))
}

/// `fetched` with every injected header value replaced by `[redacted]`: a
/// server that echoes its request (or puts a key in a URL) must not hand
/// the plugin what the host kept from it. The body, read past `cap` by the
/// longest value, is cut at `cap` only after that, so no value is handed
/// back in part.
fn redact(mut fetched: Fetched, reach: &Reach, cap: usize) -> Fetched {
    let values = reach
        .inject
        .iter()
        .flat_map(|entry| entry.secrets.iter())
        .filter(|value| value.len() >= MIN_REDACTED);
    for value in values {
        for text in [&mut fetched.url, &mut fetched.body] {
            if text.contains(value) {
                *text = text.replace(value, crate::secrets::REDACTED);
            }
        }
        if let Some(kind) = &mut fetched.content_type
            && kind.contains(value)
        {
            *kind = kind.replace(value, crate::secrets::REDACTED);
        }
    }
    if fetched.body.len() > cap {
        let end = crate::text::floor_boundary(&fetched.body, cap);
        fetched.body.truncate(end);
        fetched.truncated = true;
    }
    fetched
}

/// Whether injected credentials may travel to `url`: over https, or to a
/// loopback address named as such (nothing on the way to read them).
fn private_channel(url: &Url) -> bool {
    url.scheme() == "https"
        || match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            _ => false,
        }
}

/// Refuse a URL that is not http(s) or whose host is not allow-listed.
fn check(file: &str, allow: &[HostPattern], url: &Url) -> Result<(), String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "fetch refused: only http and https URLs are fetched, not {url}"
        ));
    }
    if allow.is_empty() {
        return Err(format!(
            "fetch refused: plugin \"{file}\" is allowed no hosts; to let it reach {}, add it to plugins.grants.\"{file}\".fetch in .opencode/orch.json",
            url.host_str().unwrap_or("?")
        ));
    }
    if !allowed(allow, url) {
        return Err(format!(
            "fetch refused: {} is not on the hosts allowed for plugin \"{file}\" (plugins.grants.\"{file}\".fetch in .opencode/orch.json)",
            url.host_str()
                .map(|host| match url.port() {
                    Some(port) => format!("{host}:{port}"),
                    None => host.to_string(),
                })
                .unwrap_or_else(|| url.to_string())
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn only_http_urls_on_the_list_pass() {
        let allow = [HostPattern::parse("docs.rs").unwrap()];
        assert!(check("w.wasm", &allow, &url("https://docs.rs/")).is_ok());
        let err = check("w.wasm", &allow, &url("https://crates.io/")).unwrap_err();
        assert_eq!(
            err,
            "fetch refused: crates.io is not on the hosts allowed for plugin \"w.wasm\" (plugins.grants.\"w.wasm\".fetch in .opencode/orch.json)"
        );
        let err = check("w.wasm", &allow, &url("file:///etc/passwd")).unwrap_err();
        assert!(err.contains("only http and https"), "{err}");
        let err = check("w.wasm", &[], &url("https://docs.rs/")).unwrap_err();
        assert!(err.contains("is allowed no hosts"), "{err}");
    }

    #[test]
    fn credentials_travel_only_over_https_or_to_loopback() {
        assert!(private_channel(&url("https://api.github.com/search")));
        assert!(!private_channel(&url("http://api.github.com/search")));
        assert!(private_channel(&url("http://127.0.0.1:8080/")));
        assert!(private_channel(&url("http://[::1]:8080/")));
        assert!(!private_channel(&url("http://localhost:8080/")));
        assert!(!private_channel(&url("http://10.0.0.5/")));
    }
}
