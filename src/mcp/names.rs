//! What the model sees of an MCP tool: its name (`mcp__<server>__<tool>`,
//! made valid for every provider) and its input schema (made acceptable to
//! OpenAI and Anthropic). Pure functions, tested by table.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

/// The longest tool name providers accept.
pub const MAX_NAME: usize = 64;

/// `mcp__<server>__<tool>` with every character outside `[a-zA-Z0-9_-]`
/// replaced by `_`; a name past 64 characters keeps its first part and
/// ends with `_` and 8 hex digits of a hash of the whole name, so it stays
/// the same from run to run.
pub fn tool_name(server: &str, tool: &str) -> String {
    let raw = format!("mcp__{server}__{tool}");
    let clean: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.len() <= MAX_NAME {
        return clean;
    }
    with_suffix(&clean, &format!("_{}", short_hash(&raw)))
}

/// `name` cut to leave room for `suffix`, then `suffix`.
fn with_suffix(name: &str, suffix: &str) -> String {
    let keep = MAX_NAME.saturating_sub(suffix.len()).min(name.len());
    format!("{}{suffix}", &name[..keep])
}

/// 8 hex digits of the sha256 of `text`.
fn short_hash(text: &str) -> String {
    crate::files::sha256_hex(text.as_bytes())[..8].to_string()
}

/// Names for `tools` (server, tool) in order, each unique: when two clean
/// to the same name, a name that needed no change keeps it, and the others
/// (in server then tool order, so the result does not depend on the order
/// servers answered in) get `_2`, `_3`… within the length limit.
pub fn unique_names(tools: &[(String, String)]) -> Vec<String> {
    let changed = |(server, tool): &(String, String)| {
        tool_name(server, tool) != format!("mcp__{server}__{tool}")
    };
    let mut order: Vec<usize> = (0..tools.len()).collect();
    order.sort_by(|&a, &b| (changed(&tools[a]), &tools[a]).cmp(&(changed(&tools[b]), &tools[b])));
    let mut taken = BTreeSet::new();
    let mut names = vec![String::new(); tools.len()];
    for i in order {
        let (server, tool) = &tools[i];
        let base = tool_name(server, tool);
        let mut name = base.clone();
        let mut n = 2;
        while taken.contains(&name) {
            name = with_suffix(&base, &format!("_{n}"));
            n += 1;
        }
        taken.insert(name.clone());
        names[i] = name;
    }
    names
}

/// The input schema as providers take it: an object schema at the top
/// with `properties` present, without `$schema`; the rest stays JSON
/// Schema. `Err` says why a schema cannot be used (its top is not an
/// object schema).
pub fn input_schema(schema: &Map<String, Value>) -> Result<Value, String> {
    let mut schema = schema.clone();
    match schema.get("type") {
        None => {
            schema.insert("type".into(), "object".into());
        }
        Some(Value::String(kind)) if kind == "object" => {}
        Some(other) => {
            return Err(format!(
                "its input schema has type {other}, expected \"object\""
            ));
        }
    }
    schema.remove("$schema");
    match schema.get("properties") {
        None | Some(Value::Null) => {
            schema.insert("properties".into(), Value::Object(Map::new()));
        }
        Some(Value::Object(_)) => {}
        Some(_) => return Err("its input schema's \"properties\" is not an object".into()),
    }
    // OpenAI refuses a `required` that is not a list of strings.
    if let Some(required) = schema.get("required")
        && !required
            .as_array()
            .is_some_and(|names| names.iter().all(Value::is_string))
    {
        schema.remove("required");
    }
    Ok(Value::Object(schema))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn valid(name: &str) -> bool {
        (1..=MAX_NAME).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    }

    #[test]
    fn names_are_made_valid_the_same_way_every_time() {
        for (server, tool, expected) in [
            ("github", "create_issue", "mcp__github__create_issue"),
            ("my server", "get-sum", "mcp__my_server__get-sum"),
            ("gh.com", "a/b:c", "mcp__gh_com__a_b_c"),
            ("ü", "ß", "mcp______"),
        ] {
            assert_eq!(tool_name(server, tool), expected);
        }
        let long = tool_name("server", &"x".repeat(100));
        assert!(valid(&long), "{long}");
        assert_eq!(long.len(), MAX_NAME);
        assert_eq!(long, tool_name("server", &"x".repeat(100)));
        assert_ne!(long, tool_name("server", &"x".repeat(101)));
        assert!(long.starts_with("mcp__server__xxx"));
    }

    #[test]
    fn names_that_clean_alike_get_numbers_in_a_stable_order() {
        let tools = vec![
            ("s".to_string(), "a.b".to_string()),
            ("s".to_string(), "a_b".to_string()),
            ("s".to_string(), "a:b".to_string()),
        ];
        let names = unique_names(&tools);
        assert_eq!(names, ["mcp__s__a_b_2", "mcp__s__a_b", "mcp__s__a_b_3"]);
        let mut reversed = tools.clone();
        reversed.reverse();
        let mut again = unique_names(&reversed);
        again.reverse();
        assert_eq!(again, names);
        let long: Vec<(String, String)> = (0..2)
            .map(|i| {
                (
                    "s".to_string(),
                    format!("{}{}", "y".repeat(80), [".", ":"][i]),
                )
            })
            .collect();
        let names = unique_names(&long);
        assert_ne!(names[0], names[1]);
        assert!(names.iter().all(|name| valid(name)), "{names:?}");
    }

    #[test]
    fn schemas_become_object_schemas_providers_accept() {
        let cases = [
            (json!({}), Ok(json!({"type": "object", "properties": {}}))),
            (
                json!({"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
                       "properties": {"a": {"type": "string"}}, "required": ["a"]}),
                Ok(
                    json!({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}),
                ),
            ),
            (
                json!({"type": "object", "required": "a"}),
                Ok(json!({"type": "object", "properties": {}})),
            ),
            (json!({"type": "string"}), Err(())),
            (json!({"type": ["object", "null"]}), Err(())),
            (json!({"type": "object", "properties": []}), Err(())),
        ];
        for (schema, expected) in cases {
            let Value::Object(schema) = schema else {
                unreachable!()
            };
            let got = input_schema(&schema).map_err(|_| ());
            assert_eq!(got, expected, "{schema:?}");
        }
    }
}
