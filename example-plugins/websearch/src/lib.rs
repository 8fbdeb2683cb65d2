//! websearch: search the web for the agent through a JSON search API, never
//! by scraping result pages. The provider comes from the plugin's grant
//! (`plugins.grants."websearch.wasm".config`): a SearXNG instance
//! (`{"provider": "searxng", "endpoint": "https://searx.example.org"}`, its
//! `/search?format=json`) or the Brave Search API (`{"provider": "brave"}`,
//! whose key the host injects as `X-Subscription-Token` from the grant's
//! `headers`; this plugin never sees it). Unconfigured, it offers no tool.

use orch_plugin_sdk::net::{self, OutgoingRequest};
use orch_plugin_sdk::{Manifest, Plugin, ToolSpec, export_plugin, host};
use serde_json::Value;

struct WebSearch;

const BRAVE_ENDPOINT: &str = "https://api.search.brave.com/res/v1/web/search";
const DEFAULT_RESULTS: u64 = 5;
const MAX_RESULTS: u64 = 20;
/// Characters of one snippet, and of the whole answer.
const SNIPPET_CHARS: usize = 300;
const OUTPUT_CHARS: usize = 8_000;
/// Body bytes read from the API.
const BODY_BYTES: u32 = 1 << 20;

const PARAMETERS: &str = r#"{
  "type": "object",
  "properties": {
    "query": {"type": "string", "description": "what to search for"},
    "max_results": {"type": "integer", "minimum": 1, "maximum": 20, "description": "how many results (default 5)"}
  },
  "required": ["query"]
}"#;

/// The configured search API.
enum Provider {
    SearXng { endpoint: String },
    Brave { endpoint: String },
}

impl Provider {
    /// From the grant's `config`; `None` when nothing usable is configured.
    fn configured() -> Result<Option<Provider>, String> {
        let config: Value = serde_json::from_str(&host::config())
            .map_err(|err| format!("websearch: the config is not JSON: {err}"))?;
        let endpoint = config["endpoint"].as_str().map(str::to_string);
        Ok(match config["provider"].as_str() {
            Some("searxng") => endpoint.map(|endpoint| Provider::SearXng { endpoint }),
            Some("brave") => Some(Provider::Brave {
                endpoint: endpoint.unwrap_or_else(|| BRAVE_ENDPOINT.to_string()),
            }),
            Some(other) => {
                return Err(format!(
                    "websearch: provider {other:?} is not \"searxng\" or \"brave\""
                ));
            }
            None => None,
        })
    }

    fn name(&self) -> &'static str {
        match self {
            Provider::SearXng { .. } => "SearXNG",
            Provider::Brave { .. } => "Brave Search",
        }
    }
}

impl Plugin for WebSearch {
    fn manifest() -> Manifest {
        let manifest = Manifest::new("websearch", "0.1.0")
            .description(
                "Web search through SearXNG or the Brave Search API (configured in its grant)",
            )
            .capability("fetch");
        match Provider::configured() {
            Ok(Some(provider)) => manifest.tool(ToolSpec::new(
                "websearch",
                &format!(
                    "Search the web ({}) and get numbered results: title, URL and a snippet. Use it to find documentation, error messages, release notes; read a result with webfetch.",
                    provider.name()
                ),
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
        if name != "websearch" {
            return Err(format!("websearch has no tool named {name:?}"));
        }
        let provider = Provider::configured()?
            .ok_or("websearch: no search provider is configured for this plugin")?;
        let args: Value =
            serde_json::from_str(args_json).map_err(|err| format!("arguments: {err}"))?;
        let query = args["query"]
            .as_str()
            .map(str::trim)
            .filter(|query| !query.is_empty())
            .ok_or("missing \"query\": the words to search for")?;
        let count = args["max_results"]
            .as_u64()
            .unwrap_or(DEFAULT_RESULTS)
            .clamp(1, MAX_RESULTS) as usize;
        let request = match &provider {
            Provider::SearXng { endpoint } => OutgoingRequest::get(
                &format!(
                    "{}/search?q={}&format=json",
                    endpoint.trim_end_matches('/'),
                    encode(query)
                ),
                BODY_BYTES,
            ),
            Provider::Brave { endpoint } => OutgoingRequest::get(
                &format!("{endpoint}?q={}&count={count}", encode(query)),
                BODY_BYTES,
            ),
        }
        .header("Accept", "application/json");
        let response = net::request(&request)?;
        let provider_name = provider.name();
        if response.status >= 400 {
            return Err(api_error(provider_name, response.status, &response.body));
        }
        let body: Value = serde_json::from_str(&response.body).map_err(|err| {
            format!(
                "{provider_name}: the answer is not JSON ({err}){}",
                if response.truncated {
                    " (it was cut at the byte cap)"
                } else {
                    ""
                }
            )
        })?;
        let results = match provider {
            Provider::SearXng { .. } => hits(&body["results"], "content"),
            Provider::Brave { .. } => hits(&body["web"]["results"], "description"),
        };
        Ok(render(query, provider_name, &results, count))
    }
}

/// One result: title, URL, snippet.
struct Hit {
    title: String,
    url: String,
    snippet: String,
}

fn hits(list: &Value, snippet_field: &str) -> Vec<Hit> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| {
                    Some(Hit {
                        title: strip_tags(item["title"].as_str().unwrap_or("(untitled)")),
                        url: item["url"].as_str()?.to_string(),
                        snippet: strip_tags(item[snippet_field].as_str().unwrap_or("")),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

fn render(query: &str, provider: &str, hits: &[Hit], count: usize) -> String {
    if hits.is_empty() {
        return format!("no results for {query:?} ({provider})");
    }
    let mut out = String::new();
    for (i, hit) in hits.iter().take(count).enumerate() {
        let entry = format!(
            "{}. {}\n   {}\n{}",
            i + 1,
            cut(&hit.title, 200),
            hit.url,
            if hit.snippet.is_empty() {
                String::new()
            } else {
                format!("   {}\n", cut(&hit.snippet, SNIPPET_CHARS))
            }
        );
        if out.chars().count() + entry.chars().count() > OUTPUT_CHARS {
            out.push_str("[more results left out: the answer is capped]\n");
            break;
        }
        out.push_str(&entry);
    }
    out.trim_end().to_string()
}

/// A tool error naming the provider and what to do about the status.
fn api_error(provider: &str, status: u16, body: &str) -> String {
    let detail = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|json| {
            json["error"]["detail"]
                .as_str()
                .or(json["message"].as_str())
                .or(json["error"].as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| cut(body.trim(), 300));
    let hint = match status {
        401 => {
            "the API key was refused: check the header configured for this host in plugins.grants.\"websearch.wasm\".headers and the environment variable it names"
        }
        403 => {
            "forbidden or rate limited (a SearXNG instance must enable the json format in settings.yml, search.formats)"
        }
        422 => "the query was not accepted",
        429 => "rate limited: wait before searching again",
        _ => "the search failed",
    };
    format!("{provider} answered {status}: {hint}; it said: {detail}")
}

/// Text with HTML tags dropped (Brave marks matches with `<strong>`) and
/// the common entities decoded, on one line.
fn strip_tags(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    let out = out
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    out.split_whitespace().collect::<Vec<_>>().join(" ")
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

export_plugin!(WebSearch);
