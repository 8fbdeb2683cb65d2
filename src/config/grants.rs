//! What `orch.json` grants a plugin file: project access, a memory cap and
//! the hosts it may fetch from, each entry parsed once at load.

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

/// The data folder of the plugin file `file` in the project at `root`.
pub fn plugin_data_dir(root: &std::path::Path, file: &str) -> std::path::PathBuf {
    let stem = file.strip_suffix(".wasm").unwrap_or(file);
    root.join(".opencode").join("plugin-data").join(stem)
}

/// One allow-list entry: `docs.rs` (that host, any port), `127.0.0.1:8080`
/// (that port only), `*.python.org` (its subdomains, not `python.org`).
#[derive(Debug, Clone, PartialEq, Eq)]
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
}
