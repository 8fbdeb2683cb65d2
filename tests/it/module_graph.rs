//! The module graph of `src/`, read from the sources: which top-level
//! module names which (`crate::…` paths, `use crate::{…}` groups included;
//! comments and literals left out), checked against ARCHITECTURE.md's
//! rules: no cycles, and the "must not" edges of the codemap.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module → the modules it names → one file naming each.
type Graph = BTreeMap<String, BTreeMap<String, PathBuf>>;

/// `text` without comments, string, byte string and character literals
/// (each replaced by a space), so only code is searched.
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    while i < chars.len() {
        let c = chars[i];
        if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r'
            && (at(i + 1) == '"' || at(i + 1) == '#')
            && !at(i.wrapping_sub(1)).is_alphanumeric()
            && at(i.wrapping_sub(1)) != '_'
        {
            // A raw string: r"…", r#"…"#, br"…".
            let mut j = i + 1;
            let mut hashes = 0;
            while at(j) == '#' {
                hashes += 1;
                j += 1;
            }
            if at(j) != '"' {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (1..=hashes).all(|k| at(j + k) == '#') {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            i = j;
            out.push(' ');
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push(' ');
        } else if c == '\'' && (at(i + 1) == '\\' || at(i + 2) == '\'') {
            // A character literal ('a', '\n', '\u{1F600}'), not a lifetime.
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push(' ');
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The first segments of every path `code` names through `crate::`.
fn crate_paths(code: &str) -> BTreeSet<String> {
    let ident = |rest: &str| -> String {
        rest.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut names = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let before = code[..at].chars().next_back().unwrap_or(' ');
        if before.is_alphanumeric() || before == '_' {
            continue;
        }
        let rest = code[at + "crate::".len()..].trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a, b::{c, d}}`: the names at the group's own depth.
            let mut depth = 0;
            let mut expect = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => expect = true,
                    c if expect && depth == 0 && (c.is_alphabetic() || c == '_') => {
                        names.insert(ident(&group[i..]));
                        expect = false;
                    }
                    _ => {}
                }
            }
        } else {
            names.insert(ident(rest));
        }
    }
    names
}

fn rust_files(path: &Path, into: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        entries.sort();
        for entry in entries {
            rust_files(&entry, into);
        }
    } else if path.extension().is_some_and(|ext| ext == "rs") {
        into.push(path.to_path_buf());
    }
}

/// The graph of the top-level modules under `src` (tests included: a test
/// module's imports are edges too).
fn graph(src: &Path) -> Graph {
    let mut modules = BTreeMap::new();
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let module = path.is_dir() || path.extension().is_some_and(|ext| ext == "rs");
        if module && name != "lib" && name != "main" {
            modules.insert(name, path);
        }
    }
    let mut graph = Graph::new();
    for (module, path) in &modules {
        let mut files = Vec::new();
        rust_files(path, &mut files);
        let edges = graph.entry(module.clone()).or_default();
        for file in files {
            let code = code_only(&std::fs::read_to_string(&file).unwrap());
            for name in crate_paths(&code) {
                if name != *module && modules.contains_key(&name) {
                    let file = file.strip_prefix(src).unwrap_or(&file).to_path_buf();
                    edges.entry(name).or_insert(file);
                }
            }
        }
    }
    graph
}

/// A cycle of `graph`, each step with the file that makes it, if it has one.
fn cycle(graph: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        graph: &Graph,
        module: &str,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(module) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let start = stack.iter().position(|m| m == module).unwrap();
                let mut steps = Vec::new();
                let mut path = stack[start..].to_vec();
                path.push(module.to_string());
                for pair in path.windows(2) {
                    let file = &graph[&pair[0]][&pair[1]];
                    steps.push(format!("{} -> {} ({})", pair[0], pair[1], file.display()));
                }
                return Some(steps);
            }
            None => {}
        }
        marks.insert(module.to_string(), Mark::Open);
        stack.push(module.to_string());
        for next in graph.get(module).into_iter().flat_map(BTreeMap::keys) {
            if let Some(found) = visit(graph, next, marks, stack) {
                return Some(found);
            }
        }
        stack.pop();
        marks.insert(module.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    graph
        .keys()
        .find_map(|module| visit(graph, module, &mut marks, &mut Vec::new()))
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn the_module_graph_has_no_cycles() {
    let graph = graph(&src());
    // The reader sees the edges there are (a reader that found none would
    // pass any tree).
    assert!(graph["session"].contains_key("provider"), "{graph:?}");
    assert!(graph["cli"].contains_key("config"), "{graph:?}");
    if let Some(steps) = cycle(&graph) {
        panic!("the module graph has a cycle:\n  {}", steps.join("\n  "));
    }
}

#[test]
fn modules_name_only_what_the_codemap_lets_them() {
    let graph = graph(&src());
    let names =
        |module: &str| -> BTreeSet<&str> { graph[module].keys().map(String::as_str).collect() };
    // `config` imports nothing but `text` and `files`.
    let config = names("config");
    assert!(
        config.is_subset(&BTreeSet::from(["text", "files"])),
        "config names {config:?}: {:?}",
        graph["config"]
    );
    // The leaves everyone may use name nothing.
    for leaf in ["files", "paths", "text", "walk"] {
        assert!(graph[leaf].is_empty(), "{leaf} names {:?}", graph[leaf]);
    }
    for (module, never) in [
        ("provider", ["session", "tools", "mission"].as_slice()),
        ("monitor", &["session"]),
        ("tools", &["monitor", "session", "mission"]),
        ("process", &["tools", "session", "mission", "worktree"]),
        ("sandbox", &["tools", "session", "worktree"]),
        ("worktree", &["tools", "session", "mission"]),
        ("mcp", &["session", "agents", "mission"]),
    ] {
        for other in never {
            assert!(
                !graph[module].contains_key(*other),
                "{module} names {other} in {:?}",
                graph[module][*other]
            );
        }
    }
}

#[test]
fn the_reader_finds_paths_in_code_only() {
    let code = code_only(
        "use crate::{a, b::{c, d}, e::f};\n\
         // crate::comment\n\
         /* crate::block /* nested */ crate::still */\n\
         let s = \"crate::string\"; let r = r#\"crate::raw\"#;\n\
         let c = '\"'; fn x<'a>(v: &'a str) { crate::g::h(v) }\n\
         let t = $crate::i::j;",
    );
    let names = crate_paths(&code);
    assert_eq!(
        names,
        BTreeSet::from(["a", "b", "e", "g", "i"].map(String::from)),
        "{code}"
    );
}
