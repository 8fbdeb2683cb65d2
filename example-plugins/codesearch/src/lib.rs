//! codesearch: search public code for the agent through GitHub's code
//! search API (`/search/code`, with text matches), never by scraping pages.
//! Configured in the plugin's grant (`plugins.grants."codesearch.wasm"`):
//! `"config": {"provider": "github"}` (an optional `endpoint` for GitHub
//! Enterprise or a test server) and the token injected by the host,
//! `"headers": {"api.github.com": {"Authorization": "Bearer ${GITHUB_TOKEN}"}}`;
//! this plugin never sees it. Unconfigured, it offers no tool.

use orch_plugin_sdk::net::{self, OutgoingRequest};
use orch_plugin_sdk::{Manifest, Plugin, ToolSpec, export_plugin, host};
use serde_json::Value;

struct CodeSearch;

const GITHUB_ENDPOINT: &str = "https://api.github.com/search/code";
const RESULTS: usize = 10;
/// Lines of one text-match fragment, characters of one line, of the answer.
const FRAGMENT_LINES: usize = 6;
const LINE_CHARS: usize = 200;
const OUTPUT_CHARS: usize = 10_000;
const BODY_BYTES: u32 = 2 << 20;

const PARAMETERS: &str = r#"{
  "type": "object",
  "properties": {
    "query": {"type": "string", "description": "code to look for: identifiers, strings, GitHub qualifiers such as repo:owner/name or path:src/"},
    "language": {"type": "string", "description": "only files in this language (rust, python, typescript, ...)"}
  },
  "required": ["query"]
}"#;

/// The configured code search API.
struct GitHub {
    endpoint: String,
}

fn configured() -> Result<Option<GitHub>, String> {
    let config: Value = serde_json::from_str(&host::config())
        .map_err(|err| format!("codesearch: the config is not JSON: {err}"))?;
    match config["provider"].as_str() {
        Some("github") => Ok(Some(GitHub {
            endpoint: config["endpoint"]
                .as_str()
                .unwrap_or(GITHUB_ENDPOINT)
                .to_string(),
        })),
        Some(other) => Err(format!("codesearch: provider {other:?} is not \"github\"")),
        None => Ok(None),
    }
}

impl Plugin for CodeSearch {
    fn manifest() -> Manifest {
        let manifest = Manifest::new("codesearch", "0.1.0")
            .description("Code search on GitHub (configured in its grant)")
            .capability("fetch");
        match configured() {
            Ok(Some(_)) => manifest.tool(ToolSpec::new(
                "codesearch",
                "Search public code on GitHub: numbered results with repository, path and the matching lines. Use it to see how a library or API is used in real projects.",
                PARAMETERS,
            )),
            Ok(None) => manifest,
            Err(problem) => {
                host::log(orch_plugin_sdk::LogLevel::Warn, &problem);
                manifest
            }
        }
    }

    fn call_tool(name: &str, args_json: &str) -> Result<String, String> {
        if name != "codesearch" {
            return Err(format!("codesearch has no tool named {name:?}"));
        }
        let github =
            configured()?.ok_or("codesearch: no provider is configured for this plugin")?;
        let args: Value =
            serde_json::from_str(args_json).map_err(|err| format!("arguments: {err}"))?;
        let query = args["query"]
            .as_str()
            .map(str::trim)
            .filter(|query| !query.is_empty())
            .ok_or("missing \"query\": the code to search for")?;
        let mut q = query.to_string();
        if let Some(language) = args["language"].as_str().filter(|l| !l.trim().is_empty()) {
            q.push_str(&format!(" language:{}", language.trim()));
        }
        let request = OutgoingRequest::get(
            &format!("{}?q={}&per_page={RESULTS}", github.endpoint, encode(&q)),
            BODY_BYTES,
        )
        .header("Accept", "application/vnd.github.text-match+json")
        .header("X-GitHub-Api-Version", "2022-11-28");
        let response = net::request(&request)?;
        if response.status >= 400 {
            return Err(api_error(response.status, &response.body));
        }
        let body: Value = serde_json::from_str(&response.body)
            .map_err(|err| format!("GitHub code search: the answer is not JSON ({err})"))?;
        Ok(render(&q, &body))
    }
}

fn render(query: &str, body: &Value) -> String {
    let items = body["items"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if items.is_empty() {
        return format!("no code found for {query:?} (GitHub)");
    }
    let total = body["total_count"].as_u64().unwrap_or(items.len() as u64);
    let mut out = format!(
        "{total} files match {query:?} on GitHub; the first {}:\n",
        items.len().min(RESULTS)
    );
    for (i, item) in items.iter().take(RESULTS).enumerate() {
        let repo = item["repository"]["full_name"].as_str().unwrap_or("?");
        let path = item["path"].as_str().unwrap_or("?");
        let mut entry = format!("{}. {repo} {path}\n", i + 1);
        if let Some(url) = item["html_url"].as_str() {
            entry.push_str(&format!("   {url}\n"));
        }
        let fragments = item["text_matches"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for fragment in fragments
            .iter()
            .filter(|m| m["property"].as_str().is_none_or(|p| p == "content"))
            .filter_map(|m| m["fragment"].as_str())
            .take(2)
        {
            for line in fragment
                .lines()
                .filter(|l| !l.trim().is_empty())
                .take(FRAGMENT_LINES)
            {
                entry.push_str(&format!("   | {}\n", cut(line.trim_end(), LINE_CHARS)));
            }
        }
        if out.chars().count() + entry.chars().count() > OUTPUT_CHARS {
            out.push_str("[more results left out: the answer is capped]\n");
            break;
        }
        out.push_str(&entry);
    }
    if body["incomplete_results"].as_bool() == Some(true) {
        out.push_str("[GitHub says the results are incomplete (the search timed out)]\n");
    }
    out.trim_end().to_string()
}

/// A tool error naming GitHub and what to do about the status.
fn api_error(status: u16, body: &str) -> String {
    let json = serde_json::from_str::<Value>(body).ok();
    let message = json
        .as_ref()
        .and_then(|json| json["message"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| cut(body.trim(), 300));
    let details: Vec<String> = json
        .as_ref()
        .and_then(|json| json["errors"].as_array())
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e["message"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let hint = match status {
        401 => {
            "the token was refused: check the Authorization header configured in plugins.grants.\"codesearch.wasm\".headers and the environment variable it names (code search needs a token)"
        }
        403 if message.to_ascii_lowercase().contains("rate limit") => {
            "rate limited: wait a minute before searching again"
        }
        403 => "forbidden: the token may lack access",
        422 => "the query was not accepted",
        429 => "rate limited: wait a minute before searching again",
        _ => "the search failed",
    };
    let mut out = format!("GitHub code search answered {status}: {hint}; it said: {message}");
    if !details.is_empty() {
        out.push_str(&format!(" ({})", details.join("; ")));
    }
    out
}

fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// Percent-encoding for a query-string value.
fn encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

export_plugin!(CodeSearch);
