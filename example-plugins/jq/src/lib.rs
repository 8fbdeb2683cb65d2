//! jq: query a JSON (or JSON Lines) file in the project, or JSON text, with
//! a jq filter, evaluated by jaq (a jq implementation in Rust) inside the
//! sandbox. Reads files under `/project`, so it needs a `read` grant.

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars, data, unwrap_valr};
use jaq_json::{Val, read};
use orch_plugin_sdk::{Manifest, Plugin, ToolSpec, export_plugin, project};
use serde_json::Value;

struct Jq;

/// Results listed before the rest are counted instead.
const DEFAULT_LIMIT: usize = 100;
/// Results past the limit counted before giving up on the count.
const MAX_COUNTED: usize = 10_000;
/// The largest file read.
const MAX_FILE: u64 = 16 << 20;

const PARAMETERS: &str = r#"{
  "type": "object",
  "properties": {
    "query": {"type": "string", "description": "a jq filter, e.g. '.dependencies | keys' or '.[] | select(.status == \"open\") | .id'"},
    "path": {"type": "string", "description": "a .json or .jsonl file, relative to the project root"},
    "json": {"type": "string", "description": "JSON text to query instead of a file"},
    "raw": {"type": "boolean", "description": "print string results without quotes (jq -r)"},
    "limit": {"type": "integer", "minimum": 1, "description": "the most results shown (default 100)"}
  },
  "required": ["query"]
}"#;

impl Plugin for Jq {
    fn manifest() -> Manifest {
        Manifest::new("jq", "0.1.0")
            .description("jq queries over JSON files in the project")
            .capability("project-read")
            .tool(ToolSpec::new(
                "jq",
                "Run a jq filter over a JSON or JSON Lines file in the project (or over JSON text) and get one compact JSON result per line. Use it to pull fields out of package.json, Cargo metadata, API dumps or logs without reading the whole file.",
                PARAMETERS,
            ))
    }

    fn call_tool(name: &str, args_json: &str) -> Result<String, String> {
        if name != "jq" {
            return Err(format!("jq has no tool named {name:?}"));
        }
        let args: Value =
            serde_json::from_str(args_json).map_err(|err| format!("arguments: {err}"))?;
        let query = args["query"]
            .as_str()
            .ok_or("missing \"query\": a jq filter such as \".name\"")?;
        let raw = args["raw"].as_bool().unwrap_or(false);
        let limit = args["limit"]
            .as_u64()
            .map_or(DEFAULT_LIMIT, |n| n.max(1) as usize);
        let text = match (args["path"].as_str(), args["json"].as_str()) {
            (Some(path), None) => project::read_text(path, MAX_FILE)?,
            (None, Some(json)) => json.to_string(),
            (Some(_), Some(_)) => return Err("give either \"path\" or \"json\", not both".into()),
            (None, None) => return Err("give \"path\" (a file in the project) or \"json\"".into()),
        };
        let inputs = read::parse_many(text.as_bytes())
            .collect::<Result<Vec<Val>, _>>()
            .map_err(|err| format!("the input is not JSON: {err}"))?;
        run(query, inputs, raw, limit)
    }
}

/// Compile `query` and run it over every input, one result per line.
fn run(query: &str, inputs: Vec<Val>, raw: bool, limit: usize) -> Result<String, String> {
    let defs = jaq_core::defs()
        .chain(jaq_std::defs())
        .chain(jaq_json::defs());
    let funs = jaq_core::funs()
        .chain(jaq_std::funs())
        .chain(jaq_json::funs());
    let loader = Loader::new(defs);
    let arena = Arena::default();
    let program = File {
        code: query,
        path: (),
    };
    let modules = loader
        .load(&arena, program)
        .map_err(|errors| parse_errors(query, errors))?;
    let filter = Compiler::default()
        .with_funs(funs)
        .compile(modules)
        .map_err(|errors| {
            let names: Vec<String> = errors
                .into_iter()
                .flat_map(|(_, undefined)| undefined)
                .map(|(name, kind)| format!("{} {name}", kind.as_str()))
                .collect();
            format!("jq: undefined {}", names.join(", "))
        })?;
    let mut lines: Vec<String> = Vec::new();
    let mut more = 0usize;
    // Results past the limit are counted up to a point: a filter such as
    // `repeat(1)` never ends.
    'inputs: for input in inputs {
        let ctx = Ctx::<data::JustLut<Val>>::new(&filter.lut, Vars::new([]));
        for output in filter.id.run((ctx, input)).map(unwrap_valr) {
            let value = output.map_err(|err| format!("jq: {err}"))?;
            if lines.len() < limit {
                lines.push(render(&value, raw));
            } else {
                more += 1;
                if more == MAX_COUNTED {
                    break 'inputs;
                }
            }
        }
    }
    if lines.is_empty() {
        return Ok("(no results)".into());
    }
    let mut text = lines.join("\n");
    if more == MAX_COUNTED {
        text.push_str(&format!(
            "\n… at least {more} more results (not all counted; raise \"limit\" or narrow the filter)"
        ));
    } else if more > 0 {
        text.push_str(&format!(
            "\n… {more} more results (raise \"limit\" to see them)"
        ));
    }
    Ok(text)
}

fn render(value: &Val, raw: bool) -> String {
    match value {
        Val::TStr(bytes) if raw => String::from_utf8_lossy(bytes).into_owned(),
        other => other.to_string(),
    }
}

/// Lex and parse errors, with where in the query they happened.
fn parse_errors(query: &str, errors: jaq_core::load::Errors<&str, ()>) -> String {
    use jaq_core::load::Error;
    let at = |rest: &str| {
        let offset = query.len().saturating_sub(rest.len());
        format!(
            "at offset {offset} ({:?})",
            rest.chars().take(20).collect::<String>()
        )
    };
    let mut parts = Vec::new();
    for (_, error) in errors {
        match error {
            Error::Io(items) => parts.extend(items.into_iter().map(|(_, why)| why)),
            Error::Lex(items) => parts.extend(
                items
                    .into_iter()
                    .map(|(expect, rest)| format!("expected {} {}", expect.as_str(), at(rest))),
            ),
            Error::Parse(items) => parts.extend(
                items
                    .into_iter()
                    .map(|(expect, rest)| format!("expected {} {}", expect.as_str(), at(rest))),
            ),
        }
    }
    format!("jq: the query does not parse: {}", parts.join("; "))
}

export_plugin!(Jq);
