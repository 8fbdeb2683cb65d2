//! What `orch.json` grants a plugin file: project access, a memory cap, the
//! hosts it may fetch from, the headers the host adds to requests to them
//! (secrets by reference to an environment variable) and the plugin's own
//! configuration, each entry checked once at load.

use std::collections::BTreeMap;

use serde::Deserialize;
use url::Url;

/// What one plugin file is granted. The grant holds only while the file's
/// sha256 matches `sha256` (`orch plugins list` prints it).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginGrant {
    pub sha256: String,
    /// The project root, mounted read-only at `/project`: `read`
    /// (`read-write`, from before plugins kept their files apart, means
    /// `read` plus `data`).
    #[serde(default)]
    pub project: Option<ProjectAccess>,
    /// The plugin's own folder, read-write at `/data`:
    /// `.opencode/plugin-data/<file stem>/`, where nothing else writes.
    #[serde(default)]
    pub data: bool,
    /// A memory cap for this plugin instead of `plugins.memory_mib`.
    #[serde(default)]
    pub memory_mib: Option<u64>,
    /// Hosts the plugin may `fetch` from: `docs.rs` (any port),
    /// `127.0.0.1:8080` (that port only) or `*.python.org` (subdomains).
    /// Empty: no network at all.
    #[serde(default)]
    pub fetch: Vec<String>,
    /// Headers the host adds to every request to a host of `fetch` (the key
    /// is that entry, written the same way): literal text with `${VAR}`
    /// references to environment variables, read when the plugin loads.
    /// The plugin never sees the values.
    #[serde(default)]
    pub headers: BTreeMap<String, BTreeMap<String, String>>,
    /// The plugin's own settings (a JSON object), which it reads through
    /// the contract's `host.config`.
    #[serde(default)]
    pub config: Option<serde_json::Value>,
}

/// Access to the project root granted to a plugin. The project is never
/// writable by a plugin: `ReadWrite` reads it and grants the data folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProjectAccess {
    Read,
    ReadWrite,
}

impl PluginGrant {
    /// Whether the plugin gets its own data folder.
    pub fn keeps_data(&self) -> bool {
        self.data || self.project == Some(ProjectAccess::ReadWrite)
    }
}

/// A grant problem: the key under `plugins.grants.<file>.` and what was expected.
pub type GrantProblem = (String, String);

impl PluginGrant {
    /// Check what serde cannot: fetch entries, header hosts on the fetch
    /// list, header names and values, `config` an object.
    pub fn check(&self) -> Result<(), GrantProblem> {
        let mut hosts = Vec::new();
        for (i, entry) in self.fetch.iter().enumerate() {
            hosts.push(
                HostPattern::parse(entry).map_err(|message| (format!("fetch[{i}]"), message))?,
            );
        }
        for (host, headers) in &self.headers {
            let key = format!("headers.{host}");
            let pattern = HostPattern::parse(host).map_err(|message| (key.clone(), message))?;
            if !hosts.contains(&pattern) {
                return Err((
                    key,
                    format!(
                        "expected a host listed in \"fetch\" ({}), got {host:?}",
                        if self.fetch.is_empty() {
                            "which is empty".to_string()
                        } else {
                            self.fetch.join(", ")
                        }
                    ),
                ));
            }
            for (name, value) in headers {
                let key = format!("headers.{host}.{name}");
                let valid_name = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                if !valid_name {
                    return Err((key, format!("expected an HTTP header name, got {name:?}")));
                }
                HeaderValue::parse(value).map_err(|message| (key, message))?;
            }
        }
        if let Some(config) = &self.config
            && !config.is_object()
        {
            return Err((
                "config".to_string(),
                format!("expected a JSON object, got {config}"),
            ));
        }
        Ok(())
    }
}

/// A configured header value: literal text and `${VAR}` references, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderValue(Vec<ValuePart>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum ValuePart {
    Text(String),
    Var(String),
}

impl HeaderValue {
    /// Parse `Bearer ${GITHUB_TOKEN}`: a `$` must open a `${NAME}` reference
    /// (letters, digits, `_`, not starting with a digit).
    pub fn parse(value: &str) -> Result<HeaderValue, String> {
        let expected = || {
            format!(
                "expected plain text or \"${{VAR}}\" references to environment variables (such as \"Bearer ${{GITHUB_TOKEN}}\"), got {value:?}"
            )
        };
        if value.contains(['\r', '\n', '\0']) {
            return Err(expected());
        }
        let mut parts = Vec::new();
        let mut rest = value;
        while let Some(at) = rest.find('$') {
            if at > 0 {
                parts.push(ValuePart::Text(rest[..at].to_string()));
            }
            let after = rest[at..].strip_prefix("${").ok_or_else(expected)?;
            let end = after.find('}').ok_or_else(expected)?;
            let name = &after[..end];
            let valid = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !valid {
                return Err(expected());
            }
            parts.push(ValuePart::Var(name.to_string()));
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            parts.push(ValuePart::Text(rest.to_string()));
        }
        Ok(HeaderValue(parts))
    }

    /// The environment variables it refers to.
    pub fn vars(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|part| match part {
            ValuePart::Var(name) => Some(name.as_str()),
            ValuePart::Text(_) => None,
        })
    }

    /// The value with each reference replaced by `lookup(name)`; the names
    /// `lookup` has no value for come back as the error.
    pub fn expand(
        &self,
        mut lookup: impl FnMut(&str) -> Option<String>,
    ) -> Result<String, Vec<String>> {
        let mut out = String::new();
        let mut missing = Vec::new();
        for part in &self.0 {
            match part {
                ValuePart::Text(text) => out.push_str(text),
                ValuePart::Var(name) => match lookup(name) {
                    Some(value) => out.push_str(&value),
                    None => missing.push(name.clone()),
                },
            }
        }
        if missing.is_empty() {
            Ok(out)
        } else {
            Err(missing)
        }
    }
}

/// The data folder of the plugin file `file` in the project at `root`.
pub fn plugin_data_dir(root: &std::path::Path, file: &str) -> std::path::PathBuf {
    let stem = file.strip_suffix(".wasm").unwrap_or(file);
    root.join(".opencode").join("plugin-data").join(stem)
}

/// One allow-list entry: `docs.rs` (that host, any port), `127.0.0.1:8080`
/// (that port only), `*.python.org` (its subdomains, not `python.org`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPattern {
    /// Lowercase, IDNA-normalized as URLs are.
    host: String,
    port: Option<u16>,
    subdomains: bool,
}

impl HostPattern {
    /// Parse an entry, explaining what was expected when it is not one.
    pub fn parse(entry: &str) -> Result<HostPattern, String> {
        let invalid = || {
            format!(
                "expected a host such as \"docs.rs\", \"*.python.org\" or \"127.0.0.1:8080\" (no scheme, no path), got {entry:?}"
            )
        };
        let trimmed = entry.trim();
        let (subdomains, rest) = match trimmed.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        if rest.is_empty()
            || rest.contains(['/', '\\', '?', '#', '@', '*', '%'])
            || rest.contains(char::is_whitespace)
        {
            return Err(invalid());
        }
        // A trailing `:digits` is a port, unless it is part of a bare IPv6
        // address (those need brackets to carry a port).
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port))
                if !host.contains(':')
                    && !port.is_empty()
                    && port.bytes().all(|b| b.is_ascii_digit()) =>
            {
                (host, Some(port.parse::<u16>().map_err(|_| invalid())?))
            }
            Some((host, port))
                if host.ends_with(']')
                    && !port.is_empty()
                    && port.bytes().all(|b| b.is_ascii_digit()) =>
            {
                (host, Some(port.parse::<u16>().map_err(|_| invalid())?))
            }
            _ => (rest, None),
        };
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        let parsed = Url::parse(&format!("http://{host}/")).map_err(|_| invalid())?;
        let normalized = parsed.host_str().ok_or_else(invalid)?.to_string();
        // What the user typed is what is matched: URL parsing would also
        // read `0.0.1` as `0.0.0.1` (IDNA names and IPv6 are normalized).
        if host.is_ascii() && !host.starts_with('[') && normalized != host.to_ascii_lowercase() {
            return Err(invalid());
        }
        let host = normalized;
        Ok(HostPattern {
            host,
            port,
            subdomains,
        })
    }

    /// Whether this entry names exactly the address `ip` (an IP literal, not
    /// a name or a subdomain pattern), on `port` when it names a port.
    pub fn is_address(&self, ip: std::net::IpAddr, port: u16) -> bool {
        let literal = match ip {
            std::net::IpAddr::V4(v4) => v4.to_string(),
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        };
        !self.subdomains && self.host == literal && self.port.is_none_or(|own| own == port)
    }

    /// Whether `url`'s host (and port, if the entry names one) is this one.
    pub fn matches(&self, url: &Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        let host_ok = if self.subdomains {
            host.len() > self.host.len()
                && host.ends_with(&self.host)
                && host.as_bytes()[host.len() - self.host.len() - 1] == b'.'
        } else {
            host == self.host
        };
        host_ok
            && self
                .port
                .is_none_or(|port| url.port_or_known_default() == Some(port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn entries_parse_or_say_what_was_expected() {
        let docs = HostPattern::parse("Docs.RS").unwrap();
        assert!(docs.matches(&url("https://docs.rs/serde")));
        assert!(docs.matches(&url("http://docs.rs:8080/")));
        assert!(!docs.matches(&url("https://evil-docs.rs/")));
        assert!(!docs.matches(&url("https://docs.rs.evil.com/")));

        let local = HostPattern::parse("127.0.0.1:8080").unwrap();
        assert!(local.matches(&url("http://127.0.0.1:8080/x")));
        assert!(!local.matches(&url("http://127.0.0.1:8081/x")));
        assert!(!local.matches(&url("http://localhost:8080/x")));

        let https = HostPattern::parse("example.com:443").unwrap();
        assert!(https.matches(&url("https://example.com/")));
        assert!(!https.matches(&url("http://example.com/")));

        let subs = HostPattern::parse("*.python.org").unwrap();
        assert!(subs.matches(&url("https://docs.python.org/3/")));
        assert!(!subs.matches(&url("https://python.org/")));
        assert!(!subs.matches(&url("https://notpython.org/")));

        let v6 = HostPattern::parse("[::1]:9000").unwrap();
        assert!(v6.matches(&url("http://[::1]:9000/")));
        assert!(HostPattern::parse("::1").is_ok());

        let ip = |text: &str| text.parse::<std::net::IpAddr>().unwrap();
        assert!(local.is_address(ip("127.0.0.1"), 8080));
        assert!(!local.is_address(ip("127.0.0.1"), 8081));
        assert!(
            HostPattern::parse("127.0.0.1")
                .unwrap()
                .is_address(ip("127.0.0.1"), 1)
        );
        assert!(v6.is_address(ip("::1"), 9000));
        assert!(!docs.is_address(ip("127.0.0.1"), 80));

        for bad in [
            "evil.com\\.docs.rs",
            "docs%2ers",
            "0.0.1",
            "",
            "https://docs.rs",
            "docs.rs/path",
            "a b",
            "*",
            "*.",
            "host:99999",
            "user@host",
        ] {
            let err = HostPattern::parse(bad).unwrap_err();
            assert!(err.starts_with("expected a host such as"), "{bad}: {err}");
        }
    }

    fn grant(json: serde_json::Value) -> PluginGrant {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn header_grants_name_a_fetch_host_and_refer_to_variables() {
        let ok = grant(serde_json::json!({
            "sha256": "x",
            "fetch": ["api.github.com", "127.0.0.1:9000"],
            "headers": {
                "api.github.com": {"Authorization": "Bearer ${GITHUB_TOKEN}", "X-Plain": "v1"},
                "127.0.0.1:9000": {"X-Key": "${K}"}
            },
            "config": {"provider": "github"}
        }));
        assert_eq!(ok.check(), Ok(()));
        let value = HeaderValue::parse("Bearer ${GITHUB_TOKEN}!").unwrap();
        assert_eq!(value.vars().collect::<Vec<_>>(), ["GITHUB_TOKEN"]);
        assert_eq!(
            value.expand(|name| (name == "GITHUB_TOKEN").then(|| "t0k".to_string())),
            Ok("Bearer t0k!".to_string())
        );
        assert_eq!(
            value.expand(|_| None),
            Err(vec!["GITHUB_TOKEN".to_string()])
        );

        let problem = |json: serde_json::Value| grant(json).check().unwrap_err();
        let (key, message) = problem(serde_json::json!({
            "sha256": "x", "fetch": ["docs.rs"],
            "headers": {"api.github.com": {"Authorization": "x"}}
        }));
        assert_eq!(key, "headers.api.github.com");
        assert!(
            message.contains("a host listed in \"fetch\" (docs.rs)"),
            "{message}"
        );
        for bad in ["$GITHUB_TOKEN", "${}", "${1A}", "${A", "a$b", "x\ny"] {
            let (key, message) = problem(serde_json::json!({
                "sha256": "x", "fetch": ["docs.rs"], "headers": {"docs.rs": {"X-Key": bad}}
            }));
            assert_eq!(key, "headers.docs.rs.X-Key", "{bad}");
            assert!(
                message.starts_with("expected plain text or \"${VAR}\""),
                "{bad}: {message}"
            );
        }
        let (key, _) = problem(serde_json::json!({
            "sha256": "x", "fetch": ["docs.rs"], "headers": {"docs.rs": {"Bad Name": "v"}}
        }));
        assert_eq!(key, "headers.docs.rs.Bad Name");
        let (key, message) = problem(serde_json::json!({"sha256": "x", "config": ["a"]}));
        assert_eq!(
            (key.as_str(), message.as_str()),
            ("config", "expected a JSON object, got [\"a\"]")
        );
    }
}
