//! The contract's `net` import: plugins fetch URLs through the host, which
//! reaches only the hosts the user allow-listed for that plugin file
//! (`plugins.grants.<file>.fetch`). Deny by default: a plugin with no list
//! reaches nothing. Every hop of a redirect is checked against the list, the
//! body is cut at a byte cap and the whole fetch runs under a time limit. A
//! plugin never gets a socket: WASI networking stays off in its sandbox.

use std::time::Duration;

use reqwest::Url;
use reqwest::header::CONTENT_TYPE;

use crate::config::HostPattern;
use crate::provider::error_chain;

/// Redirects followed before a fetch gives up.
const MAX_REDIRECTS: usize = 5;

/// Whether any entry of `allow` admits `url`.
pub fn allowed(allow: &[HostPattern], url: &Url) -> bool {
    allow.iter().any(|pattern| pattern.matches(url))
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

/// The HTTP client plugins share, with the host's caps.
pub struct Fetcher {
    client: std::sync::OnceLock<reqwest::Client>,
    max_bytes: usize,
    timeout: Duration,
}

impl Fetcher {
    pub fn new(max_bytes: usize, timeout: Duration) -> Fetcher {
        Fetcher {
            client: std::sync::OnceLock::new(),
            max_bytes,
            timeout,
        }
    }

    /// Built on the first fetch: most runs have no plugin that fetches.
    fn client(&self) -> Result<&reqwest::Client, String> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let client = crate::provider::client_builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!(
                "orch/",
                env!("CARGO_PKG_VERSION"),
                " (plugin fetch)"
            ))
            .connect_timeout(self.timeout)
            .build()
            .map_err(|err| format!("the HTTP client could not start: {err}"))?;
        Ok(self.client.get_or_init(|| client))
    }

    /// GET `url` for the plugin `file` whose grant allows `allow`, keeping
    /// at most `max_bytes` of the body (never more than the host's cap).
    pub async fn fetch(
        &self,
        file: &str,
        allow: &[HostPattern],
        url: &str,
        max_bytes: u32,
    ) -> Result<Fetched, String> {
        let start = Url::parse(url)
            .map_err(|err| format!("fetch refused: {url:?} is not a valid URL ({err})"))?;
        let cap = (max_bytes as usize).min(self.max_bytes);
        let work = self.follow(file, allow, start, cap);
        match tokio::time::timeout(self.timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "fetch of {url} timed out after {} ms",
                self.timeout.as_millis()
            )),
        }
    }

    async fn follow(
        &self,
        file: &str,
        allow: &[HostPattern],
        mut url: Url,
        cap: usize,
    ) -> Result<Fetched, String> {
        for _ in 0..=MAX_REDIRECTS {
            check(file, allow, &url)?;
            let mut response = self
                .client()?
                .get(url.clone())
                .send()
                .await
                .map_err(|err| format!("fetch of {url} failed: {}", error_chain(&err)))?;
            let status = response.status();
            if let Some(next) = crate::net::redirect(&url, &response)
                .map_err(|why| format!("fetch refused: {why}"))?
            {
                url = next;
                continue;
            }
            let content_type = response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|value| value.to_str().ok())
                .map(str::to_string);
            let (body, truncated) = crate::net::capped_body(&url, &mut response, cap)
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
}
