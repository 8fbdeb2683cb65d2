//! webfetch: fetch a web page or an API response for the agent, through the
//! host's `net` import. The host reaches only hosts the user allow-listed for
//! this plugin (`plugins.grants."webfetch.wasm".fetch` in orch.json) and caps
//! size and time; this plugin turns HTML into readable text.

use orch_plugin_sdk::{Manifest, Plugin, ToolSpec, export_plugin, net};
use serde_json::Value;

struct WebFetch;

/// Body bytes asked for unless the call says otherwise.
const DEFAULT_MAX_BYTES: u32 = 512 * 1024;

const PARAMETERS: &str = r#"{
  "type": "object",
  "properties": {
    "url": {"type": "string", "description": "an http(s) URL on a host the user allowed"},
    "format": {"type": "string", "enum": ["text", "raw"], "description": "text (default): HTML turned into readable text; raw: the body as sent"},
    "max_bytes": {"type": "integer", "minimum": 1, "description": "the most body bytes to keep (default 524288; the host may cap lower)"}
  },
  "required": ["url"]
}"#;

impl Plugin for WebFetch {
    fn manifest() -> Manifest {
        Manifest::new("webfetch", "0.1.0")
            .description("Fetch pages from hosts the user allowed")
            .capability("fetch")
            .tool(ToolSpec::new(
                "webfetch",
                "Fetch a URL (documentation, an API response, a changelog) and read it as text. Only hosts the user allow-listed in orch.json can be reached; others are refused.",
                PARAMETERS,
            ))
    }

    fn call_tool(name: &str, args_json: &str) -> Result<String, String> {
        if name != "webfetch" {
            return Err(format!("webfetch has no tool named {name:?}"));
        }
        let args: Value =
            serde_json::from_str(args_json).map_err(|err| format!("arguments: {err}"))?;
        let url = args["url"].as_str().ok_or("missing \"url\"")?;
        let raw = match args["format"].as_str() {
            None | Some("text") => false,
            Some("raw") => true,
            Some(other) => return Err(format!("format {other:?}: expected \"text\" or \"raw\"")),
        };
        let max_bytes = args["max_bytes"]
            .as_u64()
            .map_or(DEFAULT_MAX_BYTES, |n| n.clamp(1, u32::MAX as u64) as u32);
        let response = net::fetch(url, max_bytes)?;
        let html = response.content_type.as_deref().map_or_else(
            || looks_like_html(&response.body),
            |kind| kind.contains("html"),
        );
        let body = if html && !raw {
            html_to_text(&response.body)
        } else {
            response.body.clone()
        };
        let mut out = format!(
            "{} {}{}\n\n{}",
            response.status,
            response.url,
            response
                .content_type
                .as_deref()
                .map(|kind| format!(" ({kind})"))
                .unwrap_or_default(),
            body.trim_end()
        );
        if response.truncated {
            out.push_str("\n\n[truncated: the body is longer than the byte cap]");
        }
        if response.status >= 400 {
            return Err(out);
        }
        Ok(out)
    }
}

fn looks_like_html(body: &str) -> bool {
    let start = body
        .trim_start()
        .get(..15)
        .unwrap_or("")
        .to_ascii_lowercase();
    start.starts_with("<!doctype html") || start.starts_with("<html")
}

/// Elements whose content is never text for a reader.
const SKIPPED: &[&str] = &[
    "script", "style", "noscript", "template", "svg", "head", "title",
];
/// Elements that start a new line.
const BLOCKS: &[&str] = &[
    "p",
    "div",
    "br",
    "tr",
    "section",
    "article",
    "header",
    "footer",
    "nav",
    "main",
    "aside",
    "ul",
    "ol",
    "table",
    "blockquote",
    "hr",
    "dl",
    "dt",
    "dd",
    "form",
    "figure",
    "pre",
];

/// Readable text from HTML: the title, headings as `#` lines, list items as
/// `- ` lines, links as `text (url)`, scripts and styles dropped, entities
/// decoded, whitespace collapsed outside `<pre>`.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::new();
    let title = element_text(html, "title");
    if let Some(title) = &title {
        out.push_str("# ");
        out.push_str(title);
        out.push_str("\n\n");
    }
    let mut rest = html;
    let mut pre = 0usize;
    let mut link: Option<String> = None;
    while !rest.is_empty() {
        let Some(open) = rest.find('<') else {
            push_text(&mut out, rest, pre > 0);
            break;
        };
        push_text(&mut out, &rest[..open], pre > 0);
        rest = &rest[open..];
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = after.find("-->").map_or("", |end| &after[end + 3..]);
            continue;
        }
        // Only `<` before a letter, `/` or `!` opens a tag (`x < 3` is text).
        let opens_tag = rest[1..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '/' || c == '!');
        if !opens_tag {
            push_text(&mut out, "<", pre > 0);
            rest = &rest[1..];
            continue;
        }
        let Some(close) = tag_end(rest) else {
            push_text(&mut out, rest, pre > 0);
            break;
        };
        let tag = &rest[1..close];
        rest = &rest[close + 1..];
        let closing = tag.starts_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        // A skipped element goes with its content; one that closes itself
        // or never closes (`<head>` may) goes alone.
        if !closing && SKIPPED.contains(&name.as_str()) && !tag.ends_with('/') {
            let end = format!("</{name}");
            if let Some(after) = find_ascii_ci(rest, &end)
                .and_then(|at| rest[at..].find('>').map(|gt| &rest[at + gt + 1..]))
            {
                rest = after;
            }
            continue;
        }
        match name.as_str() {
            "pre" if closing => pre = pre.saturating_sub(1),
            "pre" => pre += 1,
            _ => {}
        }
        if BLOCKS.contains(&name.as_str()) {
            new_line(&mut out);
        } else if matches!(name.as_str(), "h1" | "h2" | "h3" | "h4" | "h5" | "h6") {
            new_line(&mut out);
            if !closing {
                out.push('\n');
                let level: usize = name[1..].parse().unwrap_or(1);
                out.push_str(&"#".repeat(level));
                out.push(' ');
            } else {
                out.push('\n');
            }
        } else if name == "li" && !closing {
            new_line(&mut out);
            out.push_str("- ");
        } else if name == "a" {
            if closing {
                if let Some(href) = link.take() {
                    out.push_str(&format!(" ({href})"));
                }
            } else {
                link = attribute(tag, "href").filter(|href| href.starts_with("http"));
            }
        }
    }
    tidy(&out)
}

/// The index of the `>` ending the tag at the start of `text`, skipping
/// quoted attribute values.
fn tag_end(text: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (i, c) in text.char_indices().skip(1) {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '>') => return Some(i),
            _ => {}
        }
    }
    None
}

fn find_ascii_ci(haystack: &str, needle: &str) -> Option<usize> {
    haystack
        .as_bytes()
        .windows(needle.len())
        .position(|window| window.eq_ignore_ascii_case(needle.as_bytes()))
}

/// The decoded text of the first `<name>…</name>`.
fn element_text(html: &str, name: &str) -> Option<String> {
    let start = find_ascii_ci(html, &format!("<{name}"))?;
    let open_end = start + html[start..].find('>')? + 1;
    let end = open_end + find_ascii_ci(&html[open_end..], &format!("</{name}"))?;
    let text = decode(html[open_end..end].trim());
    (!text.is_empty()).then(|| text.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// An attribute's value from a tag's inside (`a href="…"`).
fn attribute(tag: &str, name: &str) -> Option<String> {
    // `href=` after whitespace, not `data-href=`.
    let needle = format!("{name}=");
    let bytes = tag.as_bytes();
    let at = (1..bytes.len().saturating_sub(needle.len() - 1)).find(|&at| {
        bytes[at - 1].is_ascii_whitespace()
            && bytes[at..at + needle.len()].eq_ignore_ascii_case(needle.as_bytes())
    })?;
    let value = &tag[at + needle.len()..];
    let value = match value.chars().next()? {
        q @ ('"' | '\'') => value[1..].split(q).next()?,
        _ => value
            .split(|c: char| c.is_whitespace() || c == '>')
            .next()?,
    };
    Some(decode(value))
}

fn push_text(out: &mut String, text: &str, preformatted: bool) {
    let text = decode(text);
    if preformatted {
        out.push_str(&text);
        return;
    }
    for (i, word) in text.split_whitespace().enumerate() {
        let starts_with_space = i > 0 || text.starts_with(char::is_whitespace);
        if starts_with_space && !out.ends_with([' ', '\n']) && !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    if text.ends_with(char::is_whitespace) && !text.trim().is_empty() {
        out.push(' ');
    }
}

fn new_line(out: &mut String) {
    while out.ends_with(' ') {
        out.pop();
    }
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
}

/// Trailing spaces off every line, at most one blank line in a row.
fn tidy(text: &str) -> String {
    let mut out = String::new();
    let mut blank = 0;
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank += 1;
            if blank > 1 || out.is_empty() {
                continue;
            }
        } else {
            blank = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The common named entities and every numeric one.
fn decode(text: &str) -> String {
    if !text.contains('&') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let end = rest.bytes().take(12).position(|b| b == b';');
        let decoded = end.and_then(|end| {
            let entity = &rest[1..end];
            let c = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" | "#39" => Some('\''),
                "nbsp" => Some(' '),
                "mdash" => Some('—'),
                "ndash" => Some('–'),
                "hellip" => Some('…'),
                "copy" => Some('©'),
                _ => entity
                    .strip_prefix("#x")
                    .or_else(|| entity.strip_prefix("#X"))
                    .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                    .or_else(|| entity.strip_prefix('#').and_then(|dec| dec.parse().ok()))
                    .and_then(char::from_u32),
            }?;
            Some((c, end + 1))
        });
        match decoded {
            Some((c, used)) => {
                out.push(c);
                rest = &rest[used..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

export_plugin!(WebFetch);
