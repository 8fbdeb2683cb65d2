//! Memory: four tiers of entries (System, Project, Mission, Task) with token
//! budgets, relevance gating by an exponential moving average of use
//! (`ema`), context assembly within a model's window (`context`, `budget`,
//! `limits`), compaction planning (`compact`) and token counting (`tokens`).
//!
//! The Project and System tiers are persisted in
//! `.opencode/memory/project.json` and survive missions; the Mission tier
//! lives in the mission's directory; the Task tier belongs to one session.
//! This module never calls a provider: the session runs summaries through
//! its `ModelClient`.

pub mod budget;
pub mod compact;
pub mod context;
pub mod ema;
pub mod tokens;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::config::{MemoryConfig, ModelLimits};
use crate::files::{self, Durability};
use crate::provider::ToolCall;
use ema::{Rule, Scored, Use};

/// A memory tier, from the most stable to the most local.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    System,
    Project,
    Mission,
    Task,
}

impl Tier {
    pub const ALL: [Tier; 4] = [Tier::System, Tier::Project, Tier::Mission, Tier::Task];

    pub fn parse(text: &str) -> Option<Tier> {
        match text.to_ascii_lowercase().as_str() {
            "system" => Some(Tier::System),
            "project" => Some(Tier::Project),
            "mission" => Some(Tier::Mission),
            "task" => Some(Tier::Task),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Tier::System => "system",
            Tier::Project => "project",
            Tier::Mission => "mission",
            Tier::Task => "task",
        }
    }
}

/// One remembered fact or decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// `m<n>`, unique within the project; the model cites entries by it.
    pub id: String,
    pub text: String,
    /// Who wrote it: the agent, or `user`.
    pub source: String,
    pub tier: Tier,
    /// A "stable core" entry: never evicted.
    #[serde(default)]
    pub pinned: bool,
    /// Relevance, an EMA of use signals (`ema`).
    pub score: f64,
    pub created_ms: u64,
    /// The strongest use since the last iteration.
    #[serde(skip)]
    signal: f64,
}

impl Scored for Entry {
    fn score(&self) -> f64 {
        self.score
    }
    fn set_score(&mut self, score: f64) {
        self.score = score;
    }
    fn take_signal(&mut self) -> f64 {
        std::mem::take(&mut self.signal)
    }
    fn pinned(&self) -> bool {
        self.pinned
    }
}

impl Entry {
    fn mark(&mut self, used: Use) {
        self.signal = self.signal.max(used.signal());
    }

    fn tokens(&self) -> u64 {
        tokens::count(&self.text) + ENTRY_OVERHEAD
    }

    /// An upper bound on `tokens` without the token tables.
    fn tokens_at_most(&self) -> u64 {
        tokens::at_most(&self.text) + ENTRY_OVERHEAD
    }
}

/// Tokens of an entry's rendered line beyond its text (`- [m12, pinned] `).
const ENTRY_OVERHEAD: u64 = 8;

/// A memory problem: a tier file that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("memory file {path}: {message}")]
    File { path: String, message: String },
}

/// How a tier file looks on disk.
#[derive(Debug, Default, Serialize, Deserialize)]
struct TierFile {
    #[serde(default)]
    entries: Vec<Entry>,
}

#[derive(Debug, Default)]
struct Tiers {
    system: Vec<Entry>,
    project: Vec<Entry>,
    mission: Vec<Entry>,
    task: BTreeMap<String, Vec<Entry>>,
    next_id: u64,
}

impl Tiers {
    fn all_mut(&mut self) -> impl Iterator<Item = &mut Vec<Entry>> {
        [&mut self.system, &mut self.project, &mut self.mission]
            .into_iter()
            .chain(self.task.values_mut())
    }

    fn visible_mut<'a>(&'a mut self, session: &str) -> impl Iterator<Item = &'a mut Entry> {
        let task = self.task.get_mut(session);
        self.system
            .iter_mut()
            .chain(self.project.iter_mut())
            .chain(self.mission.iter_mut())
            .chain(task.into_iter().flat_map(|entries| entries.iter_mut()))
    }

    fn tier(&self, tier: Tier, session: &str) -> &[Entry] {
        match tier {
            Tier::System => &self.system,
            Tier::Project => &self.project,
            Tier::Mission => &self.mission,
            Tier::Task => self.task.get(session).map_or(&[], Vec::as_slice),
        }
    }

    fn tier_mut(&mut self, tier: Tier, session: &str) -> &mut Vec<Entry> {
        match tier {
            Tier::System => &mut self.system,
            Tier::Project => &mut self.project,
            Tier::Mission => &mut self.mission,
            Tier::Task => self.task.entry(session.to_string()).or_default(),
        }
    }
}

/// The memory of one process: shared by every session, the mission loop and
/// the `remember`/`recall` tools.
pub struct Memory {
    config: MemoryConfig,
    models: BTreeMap<String, ModelLimits>,
    rule: Rule,
    tiers: Mutex<Tiers>,
    /// `.opencode/memory/project.json` (System and Project tiers).
    project_file: Option<PathBuf>,
    /// The mission's `memory.json`, once a mission is attached.
    mission_file: Mutex<Option<PathBuf>>,
    /// What this run already warned about (an unknown window, a server's
    /// smaller limits, a truncating provider), so each is said once.
    warned: Mutex<BTreeSet<String>>,
}

impl Default for Memory {
    /// Memory off: requests carry the full history, as before memory existed.
    fn default() -> Self {
        Memory::in_memory(MemoryConfig {
            enabled: false,
            ..MemoryConfig::default()
        })
    }
}

impl Memory {
    /// Memory that persists nothing (tests, benchmarks, `orch run` without
    /// a project file).
    pub fn in_memory(config: MemoryConfig) -> Memory {
        Memory {
            rule: Rule {
                alpha: config.ema_alpha,
                evict_below: config.evict_below,
            },
            config,
            models: BTreeMap::new(),
            tiers: Mutex::new(Tiers::default()),
            project_file: None,
            mission_file: Mutex::new(None),
            warned: Mutex::new(BTreeSet::new()),
        }
    }

    /// The same memory with per-model limits from config.
    pub fn with_models(mut self, models: BTreeMap<String, ModelLimits>) -> Memory {
        self.models = models;
        self
    }

    /// The project's memory: System and Project tiers loaded from
    /// `<root>/.opencode/memory/project.json` (missing is empty).
    pub fn open(
        root: &Path,
        config: MemoryConfig,
        models: BTreeMap<String, ModelLimits>,
    ) -> Result<Memory, MemoryError> {
        let file = root.join(".opencode").join("memory").join("project.json");
        let loaded = read_tier_file(&file)?;
        let mut memory = Memory::in_memory(config).with_models(models);
        {
            let tiers = memory.tiers.get_mut().expect("memory lock");
            for entry in loaded.entries {
                match entry.tier {
                    Tier::System => tiers.system.push(entry),
                    _ => tiers.project.push(Entry {
                        tier: Tier::Project,
                        ..entry
                    }),
                }
            }
            tiers.next_id = next_id(tiers.system.iter().chain(&tiers.project));
        }
        memory.project_file = Some(file);
        Ok(memory)
    }

    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    pub fn config(&self) -> &MemoryConfig {
        &self.config
    }

    /// Use the Mission tier stored in `dir/memory.json` (a resumed mission
    /// gets its entries back; a new one starts empty).
    pub fn attach_mission(&self, dir: &Path) -> Result<(), MemoryError> {
        let file = dir.join("memory.json");
        let loaded = read_tier_file(&file)?;
        let mut tiers = self.tiers.lock().expect("memory lock");
        tiers.mission = loaded.entries;
        let next = next_id(tiers.mission.iter());
        tiers.next_id = tiers.next_id.max(next);
        *self.mission_file.lock().expect("memory lock") = Some(file);
        Ok(())
    }

    /// `message`, the first time `key` is warned about in this run.
    pub fn warn_once(&self, key: &str, message: String) -> Option<String> {
        self.warned
            .lock()
            .expect("memory lock")
            .insert(key.to_string())
            .then_some(message)
    }

    /// The limits of `model`, and a warning the first time an unknown
    /// model is seen.
    pub fn limits(&self, model: &str) -> (ModelLimits, Option<String>) {
        let (limits, known) = crate::models::limits(model, &self.models);
        let warning = (!known && self.warned.lock().expect("memory lock").insert(model.into()))
            .then(|| {
                format!(
                    "model \"{model}\" has no known context window; assuming {} tokens with {} for output \
                     (set models.\"{model}\" in orch.json)",
                    limits.context_window, limits.max_output
                )
            });
        (limits, warning)
    }

    /// Store an entry. The default tier is Mission inside a mission, else Task.
    pub fn remember(
        &self,
        session: &str,
        source: &str,
        text: &str,
        tier: Option<Tier>,
        pinned: bool,
    ) -> Result<Entry, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("remember: the text is empty".into());
        }
        let attached = self.mission_file.lock().expect("memory lock").is_some();
        let tier = tier.unwrap_or(if attached { Tier::Mission } else { Tier::Task });
        let budget = self.budget(tier);
        let mut tiers = self.tiers.lock().expect("memory lock");
        tiers.next_id += 1;
        let entry = Entry {
            id: format!("m{}", tiers.next_id),
            text: text.to_string(),
            source: source.to_string(),
            tier,
            pinned,
            score: ema::INITIAL_SCORE,
            created_ms: crate::events::now_ms(),
            signal: 0.0,
        };
        // Byte upper bounds settle the checks when they fit; only entries
        // near the budget are counted exactly.
        if entry.tokens_at_most() > budget && entry.tokens() > budget {
            let tokens = entry.tokens();
            return Err(format!(
                "remember: the entry has {tokens} tokens, more than the {} tier's budget of {budget}; store a shorter note",
                tier.name()
            ));
        }
        let entries = tiers.tier_mut(tier, session);
        let pinned_at_most: u64 = entries
            .iter()
            .filter(|e| e.pinned)
            .map(Entry::tokens_at_most)
            .sum::<u64>()
            + entry.tokens_at_most();
        let pinned_tokens = || {
            entries
                .iter()
                .filter(|e| e.pinned)
                .map(Entry::tokens)
                .sum::<u64>()
                + entry.tokens()
        };
        if pinned && pinned_at_most > budget && pinned_tokens() > budget {
            return Err(format!(
                "remember: pinned entries of the {} tier would take {} of its {budget} tokens; unpin or shorten one first",
                tier.name(),
                pinned_tokens()
            ));
        }
        entries.push(entry.clone());
        drop(tiers);
        self.persist_tier(tier).map_err(|err| err.to_string())?;
        Ok(entry)
    }

    /// Entries matching `query` (any of its words, case-insensitive; all
    /// entries for an empty query), best first, at most `max`. Each one
    /// returned counts as used.
    pub fn recall(&self, session: &str, query: &str, max: usize) -> Vec<Entry> {
        self.search(session, query, max, true)
    }

    /// `recall` without counting as use: for plugins looking at memory for
    /// their own bookkeeping, which says nothing about what the agents use.
    pub fn find(&self, session: &str, query: &str, max: usize) -> Vec<Entry> {
        self.search(session, query, max, false)
    }

    fn search(&self, session: &str, query: &str, max: usize, used: bool) -> Vec<Entry> {
        let words: Vec<String> = words(query).into_iter().collect();
        let mut tiers = self.tiers.lock().expect("memory lock");
        let mut hits: Vec<(usize, &mut Entry)> = tiers
            .visible_mut(session)
            .filter_map(|entry| {
                let text = entry.text.to_lowercase();
                let matched = words.iter().filter(|w| text.contains(w.as_str())).count();
                (words.is_empty() || matched > 0).then_some((matched, entry))
            })
            .collect();
        hits.sort_by(|a, b| {
            b.0.cmp(&a.0)
                .then(b.1.pinned.cmp(&a.1.pinned))
                .then(b.1.score.total_cmp(&a.1.score))
        });
        hits.into_iter()
            .take(max)
            .map(|(_, entry)| {
                if used {
                    entry.mark(Use::Recalled);
                }
                entry.clone()
            })
            .collect()
    }

    /// Record use signals from one model turn: entries the reply cites, and
    /// entries naming a file a tool call touches.
    pub fn observe(&self, session: &str, reply: &str, calls: &[ToolCall]) {
        if !self.enabled() {
            return;
        }
        let reply_words = words(reply);
        let mut tiers = self.tiers.lock().expect("memory lock");
        for entry in tiers.visible_mut(session) {
            if cites(reply, &reply_words, entry) {
                entry.mark(Use::Cited);
            }
            let paths = paths(&entry.text);
            if calls.iter().any(|call| {
                paths
                    .iter()
                    .any(|path| call.arguments.contains(path.as_str()))
            }) {
                entry.mark(Use::FileTouched);
            }
        }
    }

    /// End one iteration: update every score with its signal (`ema`), evict
    /// what fell below the threshold, persist. Returns the evicted entries.
    pub fn end_iteration(&self) -> Vec<Entry> {
        let evicted: Vec<Entry> = {
            let mut tiers = self.tiers.lock().expect("memory lock");
            tiers
                .all_mut()
                .flat_map(|entries| ema::step(&self.rule, entries))
                .collect()
        };
        // Scores changed even when nothing was evicted.
        let _ = self.persist_tier(Tier::Project);
        let _ = self.persist_tier(Tier::Mission);
        evicted
    }

    /// The session is gone: its Task tier goes with it.
    pub fn end_session(&self, session: &str) {
        self.tiers.lock().expect("memory lock").task.remove(session);
    }

    /// Every entry `session` can see, per tier (for tests and `recall`).
    pub fn entries(&self, session: &str, tier: Tier) -> Vec<Entry> {
        self.tiers
            .lock()
            .expect("memory lock")
            .tier(tier, session)
            .to_vec()
    }

    /// The pinned entries `session` sees, in tier order.
    pub fn pinned(&self, session: &str) -> Vec<Entry> {
        let tiers = self.tiers.lock().expect("memory lock");
        Tier::ALL
            .iter()
            .flat_map(|&tier| {
                tiers
                    .tier(tier, session)
                    .iter()
                    .filter(|e| e.pinned)
                    .cloned()
            })
            .collect()
    }

    fn budget(&self, tier: Tier) -> u64 {
        let budgets = &self.config.budgets;
        u64::from(match tier {
            Tier::System => budgets.system,
            Tier::Project => budgets.project,
            Tier::Mission => budgets.mission,
            Tier::Task => budgets.task,
        })
    }

    /// The memory block for `session`'s next request: each tier's entries
    /// within its budget (`budget::fit`), in a stable order, so the block
    /// only changes when the chosen set does. `None` when there is nothing
    /// to show.
    pub fn render(&self, session: &str) -> Option<String> {
        if !self.enabled() {
            return None;
        }
        let tiers = self.tiers.lock().expect("memory lock");
        let mut sections = Vec::new();
        for tier in Tier::ALL {
            let entries = tiers.tier(tier, session);
            // When even the upper bounds fit the budget every entry fits,
            // whatever the exact counts: no need to load the token tables.
            let all_fit =
                entries.iter().map(Entry::tokens_at_most).sum::<u64>() <= self.budget(tier);
            let candidates: Vec<budget::Candidate> = entries
                .iter()
                .map(|e| budget::Candidate {
                    tokens: if all_fit {
                        e.tokens_at_most()
                    } else {
                        e.tokens()
                    },
                    score: e.score,
                    pinned: e.pinned,
                })
                .collect();
            let kept = budget::fit(&candidates, self.budget(tier));
            if kept.is_empty() {
                continue;
            }
            let mut section = format!("## {} memory\n", capitalized(tier.name()));
            for index in kept {
                let entry = &entries[index];
                let pin = if entry.pinned { ", pinned" } else { "" };
                section.push_str(&format!("- [{}{pin}] {}\n", entry.id, entry.text));
            }
            sections.push(section);
        }
        (!sections.is_empty()).then(|| context::memory_block(&sections.concat()))
    }

    fn persist_tier(&self, tier: Tier) -> Result<(), MemoryError> {
        match tier {
            Tier::System | Tier::Project => {
                let Some(file) = &self.project_file else {
                    return Ok(());
                };
                let entries = {
                    let tiers = self.tiers.lock().expect("memory lock");
                    tiers.system.iter().chain(&tiers.project).cloned().collect()
                };
                write_tier_file(file, entries)
            }
            Tier::Mission => {
                let Some(file) = self.mission_file.lock().expect("memory lock").clone() else {
                    return Ok(());
                };
                let entries = self.tiers.lock().expect("memory lock").mission.clone();
                write_tier_file(&file, entries)
            }
            Tier::Task => Ok(()),
        }
    }
}

fn capitalized(name: &str) -> String {
    let mut chars = name.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

fn next_id<'a>(entries: impl Iterator<Item = &'a Entry>) -> u64 {
    entries
        .filter_map(|e| e.id.strip_prefix('m')?.parse::<u64>().ok())
        .max()
        .unwrap_or(0)
}

fn read_tier_file(file: &Path) -> Result<TierFile, MemoryError> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(TierFile::default()),
        Err(err) => {
            return Err(MemoryError::File {
                path: file.display().to_string(),
                message: err.to_string(),
            });
        }
    };
    serde_json::from_str(&text).map_err(|err| MemoryError::File {
        path: file.display().to_string(),
        message: format!("not valid memory JSON: {err}"),
    })
}

/// Replaced whole (`files::replace`), so a crash leaves the old or the new
/// tier, never a torn one.
fn write_tier_file(file: &Path, entries: Vec<Entry>) -> Result<(), MemoryError> {
    let error = |message: String| MemoryError::File {
        path: file.display().to_string(),
        message,
    };
    let bytes =
        serde_json::to_vec_pretty(&TierFile { entries }).map_err(|e| error(e.to_string()))?;
    files::replace(file, &bytes, Durability::Synced).map_err(|e| error(e.to_string()))
}

/// Lowercase words of at least 4 characters: what "key words" means here.
fn words(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| w.chars().count() >= 4)
        .map(str::to_lowercase)
        .collect()
}

/// A reply cites an entry when it names its id (`m12`) or uses at least
/// two thirds of its key words (entries with fewer than 3 key words need
/// the id).
fn cites(reply: &str, reply_words: &BTreeSet<String>, entry: &Entry) -> bool {
    let id_named = reply
        .split(|c: char| !c.is_alphanumeric())
        .any(|token| token == entry.id);
    if id_named {
        return true;
    }
    let keys = words(&entry.text);
    keys.len() >= 3
        && keys.iter().filter(|k| reply_words.contains(*k)).count() * 3 >= keys.len() * 2
}

/// File paths an entry names: tokens with a `/` or a file extension.
fn paths(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '(' | ')' | '`' | '"' | '\''))
        .map(|t| t.trim_end_matches(['.', ':']))
        .filter(|t| {
            t.len() > 2
                && (t.contains('/')
                    || t.rsplit_once('.').is_some_and(|(stem, ext)| {
                        stem.len() >= 2
                            && (1..=5).contains(&ext.len())
                            && ext.chars().all(|c| c.is_ascii_alphanumeric())
                            && ext.chars().any(|c| c.is_ascii_alphabetic())
                    }))
        })
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> Memory {
        Memory::in_memory(MemoryConfig::default())
    }

    #[test]
    fn tier_budgets_are_respected_when_rendering() {
        let memory = Memory::in_memory(MemoryConfig {
            budgets: crate::config::TierBudgets {
                system: 40,
                project: 40,
                mission: 40,
                task: 40,
            },
            ..MemoryConfig::default()
        });
        for i in 0..20 {
            memory
                .remember(
                    "s1",
                    "Worker",
                    &format!("note number {i} about the parser"),
                    Some(Tier::Task),
                    false,
                )
                .unwrap();
        }
        let block = memory.render("s1").unwrap();
        let lines: Vec<&str> = block.lines().filter(|l| l.starts_with("- [")).collect();
        let used: u64 = lines
            .iter()
            .map(|l| tokens::count(l.split_once("] ").unwrap().1) + ENTRY_OVERHEAD)
            .sum();
        assert!(used <= 40, "{used}");
        assert!(!lines.is_empty());
        // The newest entries win at equal score.
        assert!(block.contains("note number 19"));
        // Another session sees none of this Task tier.
        assert_eq!(memory.render("s2"), None);
    }

    #[test]
    fn pinning_beyond_the_budget_and_empty_text_are_refused() {
        let memory = Memory::in_memory(MemoryConfig {
            budgets: crate::config::TierBudgets {
                system: 20,
                ..Default::default()
            },
            ..MemoryConfig::default()
        });
        memory
            .remember("s", "u", "use tokio everywhere", Some(Tier::System), true)
            .unwrap();
        let err = memory
            .remember(
                "s",
                "u",
                "errors are thiserror enums named by decision",
                Some(Tier::System),
                true,
            )
            .unwrap_err();
        assert!(err.contains("pinned entries of the system tier"), "{err}");
        assert!(
            memory
                .remember("s", "u", "  ", None, false)
                .unwrap_err()
                .contains("empty")
        );
    }

    #[test]
    fn citing_and_touching_files_are_use_signals() {
        let memory = memory();
        let a = memory
            .remember(
                "s",
                "w",
                "the parser lives in src/parse.rs",
                Some(Tier::Project),
                false,
            )
            .unwrap();
        let b = memory
            .remember(
                "s",
                "w",
                "retries stop after the first streamed token",
                Some(Tier::Project),
                false,
            )
            .unwrap();
        let c = memory
            .remember("s", "w", "unrelated fact", Some(Tier::Project), false)
            .unwrap();
        let call = ToolCall {
            id: "1".into(),
            name: "read".into(),
            arguments: r#"{"path":"src/parse.rs"}"#.into(),
        };
        memory.observe(
            "s",
            "As noted, retries stop after the first streamed token.",
            &[call],
        );
        memory.end_iteration();
        let scores: BTreeMap<String, f64> = memory
            .entries("s", Tier::Project)
            .into_iter()
            .map(|e| (e.id, e.score))
            .collect();
        assert!((scores[&a.id] - (0.3 * 0.6 + 0.7)).abs() < 1e-12);
        assert!((scores[&b.id] - 1.0).abs() < 1e-12);
        assert!((scores[&c.id] - 0.7).abs() < 1e-12);
    }

    #[test]
    fn paths_and_words() {
        assert_eq!(
            paths("see src/lib.rs, Cargo.toml and v1.2 or e.g. (docs/x)"),
            vec!["src/lib.rs", "Cargo.toml", "docs/x"]
        );
        assert!(words("a JWT token_service").contains("token_service"));
    }
}
