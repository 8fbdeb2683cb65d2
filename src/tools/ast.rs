//! Structural search and replace: `ast_search` and `ast_replace` match
//! ast-grep patterns (`$A` one node, `$$$ARGS` any number of them) against
//! tree-sitter syntax trees of Rust, TypeScript, TSX, JavaScript, Python and
//! Go, so a call renamed this way leaves strings and comments alone.
//!
//! Files are found like `grep` finds them (`search::Target`), the language
//! comes from the extension unless `lang` names one, and `ast_replace`
//! writes through `rewrite::apply` (compare and swap, unified diff).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use ast_grep_core::matcher::PatternBuilder;
use ast_grep_core::tree_sitter::{LanguageExt, StrDoc, TSLanguage};
use ast_grep_core::{AstGrep, Language, Pattern, PatternError};
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::rewrite::{self, Change, Skipped};
use super::search::Target;
use super::seen::Seen;
use super::{Tool, ToolContext, ToolOutput, parse_args, run_blocking};
use crate::provider::ToolSpec;

/// Characters kept of a match's first line in `ast_search` output.
const MAX_MATCH_CHARS: usize = 300;
/// Upper bound on a model-requested `ast_search` `max`.
const SEARCH_HARD_MAX: usize = 2000;

/// A language the structural tools parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Lang {
    Rust,
    TypeScript,
    Tsx,
    JavaScript,
    Python,
    Go,
}

impl Lang {
    pub const ALL: [Lang; 6] = [
        Lang::Rust,
        Lang::TypeScript,
        Lang::Tsx,
        Lang::JavaScript,
        Lang::Python,
        Lang::Go,
    ];

    /// The name `lang` takes, and the other spellings it accepts.
    fn names(self) -> &'static [&'static str] {
        match self {
            Lang::Rust => &["rust", "rs"],
            Lang::TypeScript => &["typescript", "ts"],
            Lang::Tsx => &["tsx"],
            Lang::JavaScript => &["javascript", "js", "jsx"],
            Lang::Python => &["python", "py"],
            Lang::Go => &["go", "golang"],
        }
    }

    fn extensions(self) -> &'static [&'static str] {
        match self {
            Lang::Rust => &["rs"],
            Lang::TypeScript => &["ts", "mts", "cts"],
            Lang::Tsx => &["tsx"],
            Lang::JavaScript => &["js", "mjs", "cjs", "jsx"],
            Lang::Python => &["py", "pyi"],
            Lang::Go => &["go"],
        }
    }

    pub fn name(self) -> &'static str {
        self.names()[0]
    }

    /// The language `name` (case-insensitive), or an error listing the
    /// known ones.
    pub fn parse(name: &str) -> Result<Lang, String> {
        let wanted = name.trim().to_ascii_lowercase();
        Lang::ALL
            .into_iter()
            .find(|lang| lang.names().contains(&wanted.as_str()))
            .ok_or_else(|| {
                let known: Vec<&str> = Lang::ALL.iter().map(|lang| lang.name()).collect();
                format!(
                    "unknown lang {name:?}; known languages: {}",
                    known.join(", ")
                )
            })
    }

    /// The language of a file, from its extension.
    pub fn of_path(path: &Path) -> Option<Lang> {
        let extension = path.extension()?.to_str()?;
        Lang::ALL
            .into_iter()
            .find(|lang| lang.extensions().contains(&extension))
    }

    /// The character metavariables are spelled with in the text the
    /// parser sees: languages whose identifiers cannot hold `$` get a
    /// letter that they can (ast-grep's own choice, `µ`).
    fn expando(self) -> char {
        match self {
            Lang::Rust | Lang::Python | Lang::Go => 'µ',
            Lang::TypeScript | Lang::Tsx | Lang::JavaScript => '$',
        }
    }
}

impl Language for Lang {
    fn kind_to_id(&self, kind: &str) -> u16 {
        self.get_ts_language().id_for_node_kind(kind, true)
    }

    fn field_to_id(&self, field: &str) -> Option<u16> {
        self.get_ts_language()
            .field_id_for_name(field)
            .map(|id| id.get())
    }

    fn expando_char(&self) -> char {
        self.expando()
    }

    fn pre_process_pattern<'q>(&self, query: &'q str) -> Cow<'q, str> {
        if self.expando() == '$' {
            Cow::Borrowed(query)
        } else {
            Cow::Owned(spell_metavariables(query, self.expando()))
        }
    }

    fn build_pattern(&self, builder: &PatternBuilder) -> Result<Pattern, PatternError> {
        builder.build(|src| StrDoc::try_new(src, *self))
    }
}

impl LanguageExt for Lang {
    fn get_ts_language(&self) -> TSLanguage {
        match self {
            Lang::Rust => tree_sitter_rust::LANGUAGE.into(),
            Lang::TypeScript => tree_sitter_typescript::LANGUAGE_TYPESCRIPT.into(),
            Lang::Tsx => tree_sitter_typescript::LANGUAGE_TSX.into(),
            Lang::JavaScript => tree_sitter_javascript::LANGUAGE.into(),
            Lang::Python => tree_sitter_python::LANGUAGE.into(),
            Lang::Go => tree_sitter_go::LANGUAGE.into(),
        }
    }
}

/// `query` with the `$` of each metavariable (`$A`, `$$$ARGS`, `$$$`)
/// spelled `expando`, one character for one, so positions in the result
/// are positions in the pattern the model wrote. ast-grep's rule: a run of
/// `$` followed by an upper-case letter or `_`, or exactly three `$`.
fn spell_metavariables(query: &str, expando: char) -> String {
    let mut out = String::with_capacity(query.len() + 8);
    let mut dollars = 0;
    for c in query.chars() {
        if c == '$' {
            dollars += 1;
            continue;
        }
        let metavariable = c.is_ascii_uppercase() || c == '_' || dollars == 3;
        let sigil = if metavariable { expando } else { '$' };
        out.extend(std::iter::repeat_n(sigil, dollars));
        dollars = 0;
        out.push(c);
    }
    let sigil = if dollars == 3 { expando } else { '$' };
    out.extend(std::iter::repeat_n(sigil, dollars));
    out
}

/// Compile `pattern` for `lang`, or say what is wrong with it: where it
/// does not parse (line and column in the pattern, 1-based), or why it
/// matches nothing.
pub fn compile(pattern: &str, lang: Lang) -> Result<Pattern, String> {
    if pattern.trim().is_empty() {
        return Err("pattern is empty; give code with metavariables, e.g. foo($$$ARGS)".into());
    }
    let processed = lang.pre_process_pattern(pattern);
    let doc = StrDoc::try_new(&processed, lang)
        .map_err(|err| format!("pattern could not be parsed as {}: {err}", lang.name()))?;
    // An expression written without its `;` (`foo(1)` in Rust or Go) is a
    // statement once it has one: tree-sitter recovers around the missing
    // token and ast-grep matches the expression, so only a pattern that
    // does not parse either way is refused.
    let unparsed = first_error(&doc).filter(|_| {
        StrDoc::try_new(&format!("{processed};"), lang)
            .map_or(true, |terminated| first_error(&terminated).is_some())
    });
    if let Some((line, column, text)) = unparsed {
        return Err(format!(
            "pattern does not parse as {}: syntax error at line {line}, column {column} of the pattern (near {text:?}); write a complete {} expression, statement or item",
            lang.name(),
            lang.name()
        ));
    }
    let root = doc.tree.root_node();
    let mut cursor = root.walk();
    if root.children(&mut cursor).all(|child| child.is_extra()) {
        return Err(format!(
            "pattern has no code in it for {} (only comments or whitespace)",
            lang.name()
        ));
    }
    Pattern::try_new(pattern, lang).map_err(|err| match err {
        PatternError::NoContent(_) => format!(
            "pattern has no code in it for {} (only comments or whitespace)",
            lang.name()
        ),
        PatternError::MultipleNode(_) => format!(
            "pattern is more than one {} node; match one expression, statement or item (wrap several statements in a block or function)",
            lang.name()
        ),
        PatternError::RootMultiMetaVar(var) => format!(
            "pattern is only the multi-node metavariable {var}; use $A, or put $$$ inside a larger pattern such as f($$$ARGS)"
        ),
        other => format!("invalid pattern for {}: {other}", lang.name()),
    })
}

/// The first syntax error in a parsed pattern: its 1-based line and
/// column (in characters) and a little of its text. tree-sitter wraps what
/// it could not fit in an ERROR node that often starts at a valid prefix,
/// so the position named is the first token the parser left inside it.
fn first_error(doc: &StrDoc<Lang>) -> Option<(usize, usize, String)> {
    let mut cursor = doc.tree.walk();
    // Only ERROR nodes: a MISSING one is tree-sitter completing a fragment
    // (the `;` after `$X.unwrap()`), which ast-grep accepts.
    let error = loop {
        let node = cursor.node();
        if node.is_error() {
            break node;
        }
        if node.has_error() && cursor.goto_first_child() {
            continue;
        }
        loop {
            if cursor.goto_next_sibling() {
                break;
            }
            if !cursor.goto_parent() {
                return None;
            }
        }
    };
    let mut at = error;
    loop {
        let mut children = at.walk();
        let stray = at
            .children(&mut children)
            .find(|child| child.is_error() || child.child_count() == 0);
        match stray {
            Some(child) if child.is_error() && child.child_count() > 0 => at = child,
            Some(child) => {
                at = child;
                break;
            }
            None => break,
        }
    }
    let start = at.start_byte();
    let before = &doc.src[..start];
    let line_start = before.rfind('\n').map_or(0, |at| at + 1);
    let line = before.matches('\n').count() + 1;
    let column = doc.src[line_start..start].chars().count() + 1;
    let end = error.end_byte().min(doc.src.len());
    let text: String = doc.src[start..end]
        .replace(doc.lang.expando(), "$")
        .chars()
        .take(40)
        .collect();
    Some((line, column, text))
}

/// Which files to look at, and the patterns to match in each language.
struct Plan {
    target: Target,
    /// Files in name order, each with its language.
    files: Vec<(PathBuf, Lang)>,
    /// The pattern for each language of `files` it parses in.
    patterns: BTreeMap<Lang, Pattern>,
    /// Languages with files the pattern does not parse in (no `lang`
    /// given), and why.
    unparsed: Vec<String>,
}

impl Plan {
    fn new(
        root: &Path,
        pattern: &str,
        lang: Option<&str>,
        path: Option<&str>,
        writable: bool,
        cancel: &CancellationToken,
    ) -> Result<Plan, String> {
        let lang = lang.map(Lang::parse).transpose()?;
        // A pattern given with its language is checked before any walk.
        let given = lang.map(|lang| compile(pattern, lang)).transpose()?;
        let target = Target::resolve(root, path, writable)?;
        let mut files: Vec<(PathBuf, Lang)> = Vec::new();
        if target.is_dir {
            let keep = |under: &Path| match (Lang::of_path(under), lang) {
                (Some(found), Some(wanted)) => found == wanted,
                (Some(_), None) => true,
                (None, _) => false,
            };
            for file in target.files(root, writable, &keep, cancel)? {
                if let Some(found) = Lang::of_path(&file) {
                    files.push((file, found));
                }
            }
        } else {
            // One file: `lang` wins over its extension.
            let found = lang
                .or_else(|| Lang::of_path(&target.path))
                .ok_or_else(|| {
                    format!(
                        "cannot tell the language of {:?} from its extension; give lang ({})",
                        target.shown,
                        known_langs()
                    )
                })?;
            files.push((target.path.clone(), found));
        }

        let mut patterns = BTreeMap::new();
        let mut unparsed = Vec::new();
        match (lang, given) {
            (Some(lang), Some(compiled)) => {
                patterns.insert(lang, compiled);
            }
            _ => {
                let langs: BTreeSet<Lang> = files.iter().map(|(_, lang)| *lang).collect();
                for found in langs {
                    match compile(pattern, found) {
                        Ok(compiled) => {
                            patterns.insert(found, compiled);
                        }
                        Err(why) => unparsed.push(why),
                    }
                }
                if patterns.is_empty() && !unparsed.is_empty() {
                    return Err(unparsed.join("\n"));
                }
            }
        }
        Ok(Plan {
            target,
            files,
            patterns,
            unparsed,
        })
    }

    /// Each file with the pattern of its language, skipping languages the
    /// pattern does not parse in.
    fn work(&self) -> impl Iterator<Item = (&PathBuf, Lang, &Pattern)> {
        self.files.iter().filter_map(|(file, lang)| {
            let pattern = self.patterns.get(lang)?;
            Some((file, *lang, pattern))
        })
    }

    fn nothing_to_search(&self, lang: Option<&str>) -> Option<String> {
        if !self.files.is_empty() {
            return None;
        }
        Some(match lang {
            Some(lang) => format!("no {lang} files in {}", self.target.shown),
            None => format!(
                "no files of a known language ({}) in {}",
                known_langs(),
                self.target.shown
            ),
        })
    }

    /// A note naming the languages whose files were left out because the
    /// pattern does not parse in them.
    fn unparsed_note(&self) -> String {
        self.unparsed
            .iter()
            .map(|why| format!("[{why}; those files were not searched]\n"))
            .collect()
    }
}

fn known_langs() -> String {
    Lang::ALL
        .iter()
        .map(|lang| lang.name())
        .collect::<Vec<_>>()
        .join(", ")
}

pub struct AstSearch;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchArgs {
    pattern: String,
    lang: Option<String>,
    path: Option<String>,
    max: Option<u64>,
}

#[async_trait]
impl Tool for AstSearch {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "ast_search".into(),
            description: "Search code by syntax with an ast-grep pattern ($A one node, $$$A any number; e.g. $X.unwrap()). Matches code, never strings or comments. Language from the extension or lang. Prints path:line: match.".into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "pattern": {"type": "string", "description": "ast-grep pattern, e.g. $X.unwrap()"},
                    "lang": {"type": "string", "description": "rust, typescript, tsx, javascript, python or go"},
                    "path": {"type": "string", "description": "File or directory (default: the root)"},
                    "max": {"type": "integer", "minimum": 1, "description": "Most matches to return"}
                },
                "required": ["pattern"],
                "additionalProperties": false
            }),
        }
    }

    fn read_only(&self) -> bool {
        true
    }

    async fn call(&self, args: Value, ctx: &ToolContext) -> ToolOutput {
        let args: SearchArgs = match parse_args("ast_search", args) {
            Ok(args) => args,
            Err(output) => return output,
        };
        let root = ctx.root.clone();
        let default_max = ctx.limits.grep_max_matches.max(1);
        let cancel = ctx.cancel.clone();
        run_blocking(move || ast_search(&root, &args, default_max, &cancel)).await
    }
}

fn ast_search(
    root: &Path,
    args: &SearchArgs,
    default_max: usize,
    cancel: &CancellationToken,
) -> Result<String, String> {
    let plan = Plan::new(
        root,
        &args.pattern,
        args.lang.as_deref(),
        args.path.as_deref(),
        false,
        cancel,
    )?;
    if let Some(nothing) = plan.nothing_to_search(args.lang.as_deref()) {
        return Ok(nothing);
    }
    let max = super::search::requested_max(args.max, default_max, SEARCH_HARD_MAX.max(default_max));

    let mut lines: Vec<String> = Vec::new();
    let mut more = 0usize;
    let mut skipped = Skipped::default();
    for (file, lang, pattern) in plan.work() {
        if cancel.is_cancelled() {
            return Err("cancelled".into());
        }
        let source = match rewrite::load(root, file) {
            Ok(source) => source,
            Err(skip) => {
                skipped.add(skip);
                continue;
            }
        };
        let grep = AstGrep::new(&source.text, lang);
        for found in grep.root().find_all(pattern) {
            if lines.len() >= max {
                more += 1;
                continue;
            }
            let line = found.start_pos().line() + 1;
            let text = found.text();
            let mut text_lines = text.lines();
            let first = text_lines.next().unwrap_or_default().trim_end();
            let rest = text_lines.count();
            let mut entry = format!(
                "{}:{line}: {}",
                source.shown,
                crate::text::preview(first, MAX_MATCH_CHARS)
            );
            if rest > 0 {
                entry.push_str(&format!(" [… {} lines in all]", rest + 1));
            }
            lines.push(entry);
        }
    }
    let mut out = if lines.is_empty() {
        format!(
            "no matches for {:?} in {}\n",
            args.pattern, plan.target.shown
        )
    } else {
        let mut out = lines.join("\n");
        out.push('\n');
        out
    };
    if more > 0 {
        out.push_str(&format!(
            "[… {more} more matches not shown; narrow the pattern or path, or raise max]\n"
        ));
    }
    out.push_str(&plan.unparsed_note());
    out.push_str(&skipped.note());
    Ok(out)
}

pub struct AstReplace;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplaceArgs {
    pattern: String,
    rewrite: String,
    lang: Option<String>,
    path: Option<String>,
    dry_run: Option<bool>,
    max_files: Option<u64>,
}

#[async_trait]
impl Tool for AstReplace {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "ast_replace".into(),
            description: "Rewrite each match of an ast-grep pattern ($A one node, $$$A any number) as rewrite with the captures filled in, e.g. old($$$A) -> new($$$A). Shows a unified diff; dry_run writes nothing.".into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "pattern": {"type": "string", "description": "ast-grep pattern, e.g. old_name($$$ARGS)"},
                    "rewrite": {"type": "string", "description": "Code using the metavariables, e.g. new_name($$$ARGS)"},
                    "lang": {"type": "string", "description": "rust, typescript, tsx, javascript, python or go"},
                    "path": {"type": "string", "description": "File or directory (default: the root)"},
                    "dry_run": {"type": "boolean", "description": "Show the diff, write nothing"},
                    "max_files": {"type": "integer", "minimum": 1, "description": "default 100; more writes nothing"}
                },
                "required": ["pattern", "rewrite"],
                "additionalProperties": false
            }),
        }
    }

    fn edited_path(&self, args: &Value) -> Option<String> {
        rewrite::edited_path(args)
    }

    async fn call(&self, args: Value, ctx: &ToolContext) -> ToolOutput {
        let args: ReplaceArgs = match parse_args("ast_replace", args) {
            Ok(args) => args,
            Err(output) => return output,
        };
        let root = ctx.root.clone();
        let seen = ctx.seen.clone();
        let cancel = ctx.cancel.clone();
        run_blocking(move || ast_replace(&root, &args, &seen, &cancel)).await
    }
}

fn ast_replace(
    root: &Path,
    args: &ReplaceArgs,
    seen: &Seen,
    cancel: &CancellationToken,
) -> Result<String, String> {
    let plan = Plan::new(
        root,
        &args.pattern,
        args.lang.as_deref(),
        args.path.as_deref(),
        true,
        cancel,
    )?;
    if let Some(nothing) = plan.nothing_to_search(args.lang.as_deref()) {
        return Ok(nothing);
    }
    let mut changes = Vec::new();
    let mut skipped = Skipped::default();
    let mut budget = 0;
    for (file, lang, pattern) in plan.work() {
        if cancel.is_cancelled() {
            return Err("cancelled".into());
        }
        let source = match rewrite::load(root, file) {
            Ok(source) => source,
            Err(skip) => {
                skipped.add(skip);
                continue;
            }
        };
        let grep = AstGrep::new(&source.text, lang);
        let edits = grep.root().replace_all(pattern, args.rewrite.as_str());
        if edits.is_empty() {
            continue;
        }
        // Edits come sorted and apart: the new text is built front to back,
        // its size checked against the budget before it is.
        let size = edits.iter().fold(source.text.len(), |size, edit| {
            (size + edit.inserted_text.len()).saturating_sub(edit.deleted_length)
        });
        rewrite::within_budget("ast_replace", &source.shown, size, &mut budget)?;
        let bytes = source.text.as_bytes();
        let mut after = Vec::with_capacity(size);
        let mut last = 0;
        for edit in &edits {
            let kept = bytes.get(last..edit.position).ok_or_else(|| {
                format!("ast-grep returned overlapping edits for {:?}", source.shown)
            })?;
            after.extend_from_slice(kept);
            after.extend_from_slice(&edit.inserted_text);
            last = edit.position + edit.deleted_length;
        }
        after.extend_from_slice(bytes.get(last..).unwrap_or_default());
        let after = String::from_utf8(after)
            .map_err(|_| format!("the rewrite of {:?} is not valid UTF-8", source.shown))?;
        if after != source.text {
            changes.push(Change {
                source,
                after,
                replacements: edits.len(),
            });
        }
    }
    if changes.is_empty() {
        return Ok(format!(
            "no changes: {:?} matches nothing it would change in {}\n{}{}",
            args.pattern,
            plan.target.shown,
            plan.unparsed_note(),
            skipped.note()
        ));
    }
    let mut out = rewrite::apply(
        "ast_replace",
        changes,
        seen,
        args.dry_run.unwrap_or(false),
        rewrite::max_files(args.max_files),
        &skipped,
    )?;
    out.push_str(&plan.unparsed_note());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metavariables_are_respelled_one_char_for_one() {
        assert_eq!(spell_metavariables("f($A, $$$ARGS)", 'µ'), "f(µA, µµµARGS)");
        assert_eq!(spell_metavariables("g($$$)", 'µ'), "g(µµµ)");
        assert_eq!(spell_metavariables("\"$a\" + $_X", 'µ'), "\"$a\" + µ_X");
    }

    #[test]
    fn languages_by_name_and_extension() {
        assert_eq!(Lang::parse("Rust"), Ok(Lang::Rust));
        assert_eq!(Lang::parse("ts"), Ok(Lang::TypeScript));
        assert_eq!(Lang::parse("golang"), Ok(Lang::Go));
        let err = Lang::parse("cobol").unwrap_err();
        assert_eq!(
            err,
            "unknown lang \"cobol\"; known languages: rust, typescript, tsx, javascript, python, go"
        );
        assert_eq!(Lang::of_path(Path::new("a/b.tsx")), Some(Lang::Tsx));
        assert_eq!(Lang::of_path(Path::new("m.pyi")), Some(Lang::Python));
        assert_eq!(Lang::of_path(Path::new("README")), None);
    }

    #[test]
    fn patterns_compile_in_every_language() {
        let cases = [
            (Lang::Rust, "$X.unwrap()"),
            (Lang::Rust, "old_name($$$A)"),
            (Lang::TypeScript, "console.log($$$A)"),
            (Lang::Tsx, "<div>$$$C</div>"),
            (Lang::JavaScript, "require($M)"),
            (Lang::Python, "print($$$A)"),
            (Lang::Go, "fmt.Println($$$A)"),
        ];
        for (lang, pattern) in cases {
            assert!(compile(pattern, lang).is_ok(), "{pattern} in {lang:?}");
        }
    }

    #[test]
    fn a_broken_pattern_names_its_position() {
        let err = compile("foo(1,\n  $A ++ )", Lang::Rust).unwrap_err();
        assert!(
            err.starts_with("pattern does not parse as rust: syntax error at line 2, column"),
            "{err}"
        );
        let empty = compile("  ", Lang::Rust).unwrap_err();
        assert!(empty.starts_with("pattern is empty"), "{empty}");
        let comment = compile("# nothing", Lang::Python).unwrap_err();
        assert!(comment.contains("no code"), "{comment}");
    }

    #[test]
    fn a_rename_leaves_strings_and_comments() {
        let source = "fn main() {\n    // old_name(1) stays\n    let s = \"old_name(2)\";\n    old_name(a, b);\n}\n";
        let grep = AstGrep::new(source, Lang::Rust);
        let pattern = compile("old_name($$$A)", Lang::Rust).unwrap();
        let edits = grep.root().replace_all(&pattern, "new_name($$$A)");
        assert_eq!(edits.len(), 1);
        assert_eq!(edits[0].inserted_text, b"new_name(a, b)");
    }
}
