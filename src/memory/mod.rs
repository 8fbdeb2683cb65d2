//! Memory: four tiers of entries (System, Project, Mission, Task) with token
//! budgets, relevance gating by an exponential moving average of use
//! (`ema`), context assembly within a model's window (`context`, `budget`,
//! `limits`), compaction planning (`compact`) and token counting (`tokens`).
//!
//! The Project and System tiers are persisted in
//! `.opencode/memory/project.json` and survive missions; the Mission tier
//! lives in the mission's directory; the Task tier belongs to one session
//! (`store` reads and writes the files). Each tier decays at its own pace,
//! by the one `ema::Rule`: the Task tier per model turn of its session, the
//! Mission tier per mission iteration, the Project tier once per mission
//! (when the next one starts, from the use signals kept in the file), the
//! System tier never (it is the user's). This module never calls a
//! provider: the session runs summaries through its `ModelClient`.

pub mod budget;
pub mod compact;
pub mod context;
pub mod ema;
pub mod store;
pub mod tokens;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::config::{MemoryConfig, ModelLimits, TierBudgets};
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
    /// The mission it was written in (its id); none outside a mission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mission: Option<String>,
    pub tier: Tier,
    /// A "stable core" entry: never evicted.
    #[serde(default)]
    pub pinned: bool,
    /// Relevance, an EMA of use signals (`ema`).
    pub score: f64,
    pub created_ms: u64,
    /// The strongest use since its tier's last step. Kept in the file, so
    /// a Project entry used anytime during a mission counts as used when
    /// the next mission starts.
    #[serde(default, skip_serializing_if = "no_signal")]
    signal: f64,
}

fn no_signal(signal: &f64) -> bool {
    *signal == 0.0
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
    /// Record a use; System entries never decay, so they keep no signal.
    fn mark(&mut self, used: Use) {
        if self.tier != Tier::System {
            self.signal = self.signal.max(used.signal());
        }
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

/// A memory problem: a tier file that cannot be read or written, or a
/// change refused (nothing was written).
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("memory file {path}: {message}")]
    File { path: String, message: String },
    #[error("{message}")]
    Refused { message: String },
}

#[derive(Debug, Default)]
struct Tiers {
    system: Vec<Entry>,
    project: Vec<Entry>,
    mission: Vec<Entry>,
    task: BTreeMap<String, Vec<Entry>>,
    next_id: u64,
    /// Task entries evicted at a turn, reported at the next iteration.
    evicted: Vec<Entry>,
    /// The ids `project.json` held when this process last read or wrote it.
    project_known: BTreeSet<String>,
    /// The same for the mission's `memory.json`.
    mission_known: BTreeSet<String>,
}

impl Tiers {
    /// The entries stored in `tier`'s file.
    fn stored(&self, tier: Tier) -> Vec<Entry> {
        match tier {
            Tier::System | Tier::Project => {
                self.system.iter().chain(&self.project).cloned().collect()
            }
            Tier::Mission => self.mission.clone(),
            Tier::Task => Vec::new(),
        }
    }

    fn known_mut(&mut self, tier: Tier) -> Option<&mut BTreeSet<String>> {
        match tier {
            Tier::System | Tier::Project => Some(&mut self.project_known),
            Tier::Mission => Some(&mut self.mission_known),
            Tier::Task => None,
        }
    }

    /// Take in what someone else changed in `tier`'s file (`store::merge`).
    fn merge(&mut self, tier: Tier, disk: Vec<Entry>) {
        match tier {
            Tier::System | Tier::Project => {
                let mut held: Vec<Entry> = std::mem::take(&mut self.system)
                    .into_iter()
                    .chain(std::mem::take(&mut self.project))
                    .collect();
                store::merge(&mut held, &self.project_known, disk);
                self.set_project_file(held);
            }
            Tier::Mission => store::merge(&mut self.mission, &self.mission_known, disk),
            Tier::Task => {}
        }
        let next = next_id(self.system.iter().chain(&self.project).chain(&self.mission));
        self.next_id = self.next_id.max(next);
    }

    /// The System and Project tiers from `project.json`'s entries: every
    /// entry not System is Project.
    fn set_project_file(&mut self, entries: Vec<Entry>) {
        for entry in entries {
            match entry.tier {
                Tier::System => self.system.push(entry),
                _ => self.project.push(Entry {
                    tier: Tier::Project,
                    ..entry
                }),
            }
        }
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

/// The mission a memory is attached to.
struct Attached {
    id: String,
    /// Its `memory.json`.
    file: PathBuf,
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
    /// The mission whose Mission tier this is, once one is attached.
    mission: Mutex<Option<Attached>>,
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
            mission: Mutex::new(None),
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
        let file = store::project_file(root);
        let loaded = store::read(&file)?;
        let mut memory = Memory::in_memory(config).with_models(models);
        {
            let tiers = memory.tiers.get_mut().expect("memory lock");
            tiers.project_known = loaded.iter().map(|e| e.id.clone()).collect();
            tiers.set_project_file(loaded);
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
    /// gets its entries back; a new one starts empty). The directory's name
    /// is the mission's id, recorded on every entry written from now on.
    pub fn attach_mission(&self, dir: &Path) -> Result<(), MemoryError> {
        let file = store::mission_file(dir);
        let loaded = store::read(&file)?;
        let mut tiers = self.tiers.lock().expect("memory lock");
        tiers.mission_known = loaded.iter().map(|e| e.id.clone()).collect();
        tiers.mission = loaded;
        let next = next_id(tiers.mission.iter());
        tiers.next_id = tiers.next_id.max(next);
        let id = dir
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        *self.mission.lock().expect("memory lock") = Some(Attached { id, file });
        Ok(())
    }

    /// Number new entries after `entries` too (ids are unique within the
    /// project, whichever file holds them).
    pub fn number_after(&self, entries: &[Entry]) {
        let mut tiers = self.tiers.lock().expect("memory lock");
        tiers.next_id = tiers.next_id.max(next_id(entries.iter()));
    }

    /// `message`, the first time `key` is warned about in this run.
    pub fn warn_once(&self, key: &str, message: String) -> Option<String> {
        self.warned
            .lock()
            .expect("memory lock")
            .insert(key.to_string())
            .then_some(message)
    }

    /// The limits of `model` (the table's guess for an unknown one, without
    /// its warning).
    pub fn limits_of(&self, model: &str) -> ModelLimits {
        crate::models::limits(model, &self.models).0
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
        let mission = self
            .mission
            .lock()
            .expect("memory lock")
            .as_ref()
            .map(|attached| attached.id.clone());
        let tier = tier.unwrap_or(if mission.is_some() {
            Tier::Mission
        } else {
            Tier::Task
        });
        let budget = self.budget(tier);
        let mut tiers = self.tiers.lock().expect("memory lock");
        tiers.next_id += 1;
        let entry = Entry {
            id: format!("m{}", tiers.next_id),
            text: text.to_string(),
            source: source.to_string(),
            mission,
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
        if pinned {
            pinned_fit(entries.iter().filter(|e| e.pinned), &entry, budget)
                .map_err(|message| format!("remember: {message}"))?;
        }
        entries.push(entry.clone());
        drop(tiers);
        self.persist(tier).map_err(|err| err.to_string())?;
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

    /// One model turn of `session` ended: record its use signals (entries
    /// the reply cites, entries naming a file a tool call touches), then
    /// step the session's Task tier, whose pace is the turn. What it evicts
    /// is reported by the next `end_iteration`.
    pub fn observe(&self, session: &str, reply: &str, calls: &[ToolCall]) {
        let mut tiers = self.tiers.lock().expect("memory lock");
        if self.enabled() {
            let reply_words = words(reply);
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
        if let Some(entries) = tiers.task.get_mut(session) {
            let evicted = ema::step(&self.rule, entries);
            tiers.evicted.extend(evicted);
        }
    }

    /// End one mission iteration: step the Mission tier (`ema`), persist,
    /// and return what was evicted since the last iteration (Task entries
    /// at their turns included). The Project tier's signals are persisted
    /// too, for the step when the next mission starts.
    pub fn end_iteration(&self) -> Vec<Entry> {
        let evicted: Vec<Entry> = {
            let mut tiers = self.tiers.lock().expect("memory lock");
            let mut evicted = std::mem::take(&mut tiers.evicted);
            evicted.extend(ema::step(&self.rule, &mut tiers.mission));
            evicted
        };
        let _ = self.persist(Tier::Project);
        let _ = self.persist(Tier::Mission);
        evicted
    }

    /// A new mission starts (not a resumed one): step the Project tier once
    /// with the signals its entries got since the last mission started, and
    /// persist. Stepping at the start rather than at the end counts a
    /// mission that was killed. Returns the evicted entries.
    pub fn begin_mission(&self) -> Result<Vec<Entry>, MemoryError> {
        let evicted = {
            let mut tiers = self.tiers.lock().expect("memory lock");
            ema::step(&self.rule, &mut tiers.project)
        };
        self.persist(Tier::Project)?;
        Ok(evicted)
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
        tier_budget(&self.config.budgets, tier)
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

    /// Replace `tier`'s file with what this process holds, after taking in
    /// what someone else changed in it since (`store::merge`: the user's
    /// `orch memory forget` or `pin` stays done). A file that no longer
    /// reads is left as it is.
    fn persist(&self, tier: Tier) -> Result<(), MemoryError> {
        let file = match tier {
            Tier::System | Tier::Project => self.project_file.clone(),
            Tier::Mission => self
                .mission
                .lock()
                .expect("memory lock")
                .as_ref()
                .map(|attached| attached.file.clone()),
            Tier::Task => None,
        };
        let Some(file) = file else {
            return Ok(());
        };
        // The file's lock also keeps this process's own writers apart
        // (each takes it through its own descriptor).
        store::locked(&file, || {
            let disk = store::read(&file)?;
            let was_empty = disk.is_empty();
            let entries = {
                let mut tiers = self.tiers.lock().expect("memory lock");
                tiers.merge(tier, disk);
                tiers.stored(tier)
            };
            // Nothing to keep and nothing kept: no file to create.
            if !(entries.is_empty() && was_empty) {
                store::write(&file, &entries)?;
            }
            // Only what reached the file counts as known to it.
            if let Some(known) = self.tiers.lock().expect("memory lock").known_mut(tier) {
                *known = entries.into_iter().map(|e| e.id).collect();
            }
            Ok(())
        })
    }
}

/// A tier's token budget.
fn tier_budget(budgets: &TierBudgets, tier: Tier) -> u64 {
    u64::from(match tier {
        Tier::System => budgets.system,
        Tier::Project => budgets.project,
        Tier::Mission => budgets.mission,
        Tier::Task => budgets.task,
    })
}

/// Whether pinning `entry` keeps its tier's pinned entries (`pinned`,
/// without it) within `budget`. Byte upper bounds settle it when they fit;
/// only near the budget are tokens counted exactly.
fn pinned_fit<'a>(
    pinned: impl Iterator<Item = &'a Entry>,
    entry: &Entry,
    budget: u64,
) -> Result<(), String> {
    let pinned: Vec<&Entry> = pinned.collect();
    let at_most = pinned.iter().map(|e| e.tokens_at_most()).sum::<u64>() + entry.tokens_at_most();
    if at_most <= budget {
        return Ok(());
    }
    let tokens = pinned.iter().map(|e| e.tokens()).sum::<u64>() + entry.tokens();
    if tokens <= budget {
        return Ok(());
    }
    Err(format!(
        "pinned entries of the {} tier would take {tokens} of its {budget} tokens; unpin or shorten one first",
        entry.tier.name()
    ))
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
                Some(Tier::Mission),
                false,
            )
            .unwrap();
        let b = memory
            .remember(
                "s",
                "w",
                "retries stop after the first streamed token",
                Some(Tier::Mission),
                false,
            )
            .unwrap();
        let c = memory
            .remember("s", "w", "unrelated fact", Some(Tier::Mission), false)
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
            .entries("s", Tier::Mission)
            .into_iter()
            .map(|e| (e.id, e.score))
            .collect();
        assert!((scores[&a.id] - (0.3 * 0.6 + 0.7)).abs() < 1e-12);
        assert!((scores[&b.id] - 1.0).abs() < 1e-12);
        assert!((scores[&c.id] - 0.7).abs() < 1e-12);
    }

    fn open(root: &Path) -> Memory {
        Memory::open(root, MemoryConfig::default(), BTreeMap::new()).unwrap()
    }

    fn score(memory: &Memory, tier: Tier, id: &str) -> Option<f64> {
        memory
            .entries("s", tier)
            .into_iter()
            .find(|e| e.id == id)
            .map(|e| e.score)
    }

    #[test]
    fn a_project_entry_decays_once_per_mission_and_fades_after_seven_unused() {
        let dir = tempfile::tempdir().unwrap();
        let written = {
            let memory = open(dir.path());
            memory.attach_mission(&dir.path().join("m-1")).unwrap();
            memory
                .remember(
                    "s",
                    "Commander",
                    "the HTTP layer is axum",
                    Some(Tier::Project),
                    false,
                )
                .unwrap()
        };
        // Each mission is a process of its own: open, start, iterate.
        let mut expected = 1.0;
        for mission in 2..=8 {
            let memory = open(dir.path());
            memory
                .attach_mission(&dir.path().join(format!("m-{mission}")))
                .unwrap();
            let evicted = memory.begin_mission().unwrap();
            expected *= 0.7;
            // Iterations of the mission leave the Project tier alone.
            for _ in 0..10 {
                memory.end_iteration();
            }
            match score(&memory, Tier::Project, &written.id) {
                Some(score) => {
                    assert!(evicted.is_empty(), "mission {mission}");
                    assert!(
                        (score - expected).abs() < 1e-12,
                        "mission {mission}: {score}"
                    );
                    // Three missions after it was written: 0.7^3 = 0.343.
                    if mission == 4 {
                        assert!((score - 0.343).abs() < 1e-12);
                    }
                }
                None => {
                    // 0.7^6 = 0.118 stays; 0.7^7 = 0.082 is under 0.1.
                    assert_eq!(mission, 8, "evicted too early");
                    assert_eq!(evicted.len(), 1);
                    assert_eq!(evicted[0].id, written.id);
                }
            }
        }
        assert!(open(dir.path()).entries("s", Tier::Project).is_empty());
    }

    #[test]
    fn a_project_entry_used_anytime_in_a_mission_counts_for_that_mission() {
        let dir = tempfile::tempdir().unwrap();
        let memory = open(dir.path());
        let used = memory
            .remember(
                "s",
                "w",
                "tests live in tests/it",
                Some(Tier::Project),
                false,
            )
            .unwrap();
        let idle = memory
            .remember("s", "w", "unrelated fact", Some(Tier::Project), false)
            .unwrap();
        memory.begin_mission().unwrap();
        memory.end_iteration();
        // Cited in the first iteration; many iterations follow.
        memory.observe("s", &format!("as {} says", used.id), &[]);
        for _ in 0..5 {
            memory.end_iteration();
        }
        drop(memory);
        // The next mission (a new process) steps with that use.
        let memory = open(dir.path());
        memory.begin_mission().unwrap();
        assert!((score(&memory, Tier::Project, &used.id).unwrap() - 0.79).abs() < 1e-12);
        assert!((score(&memory, Tier::Project, &idle.id).unwrap() - 0.49).abs() < 1e-12);
        // The use was consumed by that step.
        memory.begin_mission().unwrap();
        assert!((score(&memory, Tier::Project, &used.id).unwrap() - 0.553).abs() < 1e-12);
    }

    #[test]
    fn a_mission_entry_decays_per_iteration() {
        let memory = memory();
        let entry = memory
            .remember("s", "w", "T1 needs a migration", Some(Tier::Mission), false)
            .unwrap();
        // Turns and mission starts are not its pace.
        memory.observe("s", "nothing", &[]);
        memory.begin_mission().unwrap();
        assert_eq!(score(&memory, Tier::Mission, &entry.id), Some(1.0));
        let mut evicted = Vec::new();
        for n in 1..=7 {
            evicted = memory.end_iteration();
            if n < 7 {
                let want = 0.7f64.powi(n);
                let got = score(&memory, Tier::Mission, &entry.id).unwrap();
                assert!((got - want).abs() < 1e-12, "{n}: {got}");
            }
        }
        assert_eq!(
            evicted.iter().map(|e| &e.id).collect::<Vec<_>>(),
            [&entry.id]
        );
    }

    #[test]
    fn a_task_entry_decays_per_turn_of_its_own_session() {
        let memory = memory();
        let mine = memory
            .remember(
                "s",
                "w",
                "scratch: try the fast path",
                Some(Tier::Task),
                false,
            )
            .unwrap();
        let other = memory
            .remember(
                "t",
                "w",
                "scratch of another session",
                Some(Tier::Task),
                false,
            )
            .unwrap();
        // Iterations and mission starts are not its pace.
        memory.end_iteration();
        memory.begin_mission().unwrap();
        assert_eq!(score(&memory, Tier::Task, &mine.id), Some(1.0));
        for turn in 1..=6 {
            memory.observe("s", "working", &[]);
            let got = score(&memory, Tier::Task, &mine.id).unwrap();
            assert!((got - 0.7f64.powi(turn)).abs() < 1e-12, "{turn}: {got}");
        }
        memory.observe("s", "working", &[]);
        assert_eq!(score(&memory, Tier::Task, &mine.id), None);
        let other_score = memory.entries("t", Tier::Task)[0].score;
        assert_eq!(
            (memory.entries("t", Tier::Task)[0].id.clone(), other_score),
            (other.id, 1.0)
        );
        // The eviction at the turn is reported at the next iteration.
        let evicted = memory.end_iteration();
        assert_eq!(
            evicted.iter().map(|e| &e.id).collect::<Vec<_>>(),
            [&mine.id]
        );
        assert!(memory.end_iteration().is_empty());
    }

    #[test]
    fn the_system_tier_never_decays() {
        let dir = tempfile::tempdir().unwrap();
        let memory = open(dir.path());
        let rule = memory
            .remember("s", "user", "answer in English", Some(Tier::System), false)
            .unwrap();
        for _ in 0..20 {
            memory.observe("s", "answer in English please", &[]);
            memory.begin_mission().unwrap();
            memory.end_iteration();
        }
        assert_eq!(score(&memory, Tier::System, &rule.id), Some(1.0));
        // No signal is kept for it either.
        let stored = std::fs::read_to_string(store::project_file(dir.path())).unwrap();
        assert!(!stored.contains("signal"), "{stored}");
    }

    #[test]
    fn an_entry_records_the_mission_it_was_written_in() {
        let dir = tempfile::tempdir().unwrap();
        let memory = open(dir.path());
        let outside = memory
            .remember(
                "s",
                "Worker",
                "before any mission",
                Some(Tier::Project),
                false,
            )
            .unwrap();
        assert_eq!(outside.mission, None);
        memory
            .attach_mission(&dir.path().join(".opencode/missions/m-abc"))
            .unwrap();
        let inside = memory
            .remember(
                "s",
                "Reviewer",
                "the API is versioned",
                Some(Tier::Project),
                false,
            )
            .unwrap();
        assert_eq!(inside.mission.as_deref(), Some("m-abc"));
        assert_eq!(inside.source, "Reviewer");
        let stored = store::read(&store::project_file(dir.path())).unwrap();
        assert_eq!(stored[0].mission, None);
        assert_eq!(stored[1].mission.as_deref(), Some("m-abc"));
    }

    #[test]
    fn a_running_process_keeps_what_the_user_forgot_or_pinned_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let memory = open(dir.path());
        let a = memory
            .remember("s", "w", "note a", Some(Tier::Project), false)
            .unwrap();
        let b = memory
            .remember("s", "w", "note b", Some(Tier::Project), false)
            .unwrap();
        let file = store::project_file(dir.path());
        let budgets = TierBudgets::default();
        store::edit(&file, &a.id, store::Edit::Forget, &budgets).unwrap();
        store::edit(&file, &b.id, store::Edit::Pin, &budgets).unwrap();
        // The process writes again (a new note, an iteration).
        let c = memory
            .remember("s", "w", "note c", Some(Tier::Project), false)
            .unwrap();
        memory.end_iteration();
        let stored: Vec<(String, bool)> = store::read(&file)
            .unwrap()
            .into_iter()
            .map(|e| (e.id, e.pinned))
            .collect();
        assert_eq!(stored, [(b.id.clone(), true), (c.id.clone(), false)]);
        let held: Vec<String> = memory
            .entries("s", Tier::Project)
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(held, [b.id, c.id]);
    }

    #[test]
    fn a_tier_file_that_stopped_parsing_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let memory = open(dir.path());
        let file = store::project_file(dir.path());
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, "not json").unwrap();
        let err = memory
            .remember("s", "w", "note", Some(Tier::Project), false)
            .unwrap_err();
        assert!(err.contains("expected orch's memory JSON"), "{err}");
        memory.end_iteration();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "not json");
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
