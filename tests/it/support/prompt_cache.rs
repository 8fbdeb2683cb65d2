//! A provider prompt cache as the providers document it, for the loopback
//! servers and the memory benchmark (which includes this file by path; it
//! uses only `std` and `serde_json`).
//!
//! Anthropic (Messages API): a request is a sequence of blocks — tools,
//! then system blocks, then each message's content blocks. A block marked
//! `cache_control` is a breakpoint (at most 4, or the request is refused
//! with 400 as the API does). The prefix ending at each breakpoint is
//! written to the cache when it holds at least the model's minimum
//! cacheable length (1 024 tokens; 2 048 for Haiku); reading looks for the
//! longest cached prefix ending at a breakpoint or at one of the 20 block
//! boundaries before it, and only there. Entries live for their TTL (5
//! minutes, or `"ttl": "1h"`), refreshed by each hit. Usage comes back as
//! `input_tokens` (after the last breakpoint), `cache_read_input_tokens`
//! and `cache_creation_input_tokens`.
//!
//! OpenAI (Chat Completions): caching is automatic for prompts of 1 024
//! tokens or more; a request reads the longest prefix an earlier request
//! sent, in steps of 128 tokens, reported as
//! `prompt_tokens_details.cached_tokens`.
//!
//! Beside the cache it checks the property orch promises: a session's
//! request is its previous request plus new messages. Sessions are told
//! apart by the system prompt and the first user message that is not a
//! memory block (the task); a request that does not start with its
//! session's previous request is a rewrite, recorded with where it
//! diverged.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How the simulated cache behaves.
#[derive(Debug, Clone, Copy)]
pub struct CacheRules {
    /// Block boundaries searched before each breakpoint.
    pub lookback: usize,
    /// Breakpoints a request may carry.
    pub max_breakpoints: usize,
    /// How long an entry lives unless hit (`"ttl": "1h"` asks for an hour).
    pub ttl: Duration,
    /// Tokens of a piece of request text.
    pub count: fn(&str) -> u64,
}

impl Default for CacheRules {
    fn default() -> Self {
        CacheRules {
            lookback: 20,
            max_breakpoints: 4,
            ttl: Duration::from_secs(300),
            count: about_four_bytes_a_token,
        }
    }
}

fn about_four_bytes_a_token(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

/// One request's prompt tokens as billed: `input` counts them all;
/// `cache_read` and `cache_write` are the parts read from and written to
/// the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Billed {
    pub input: u64,
    pub cache_read: u64,
    pub cache_write: u64,
}

/// What the cache saw over all requests.
#[derive(Debug, Clone, Default)]
pub struct CacheStats {
    pub requests: usize,
    pub input: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    /// Requests that did not start with their session's previous request:
    /// the session's task (first 60 characters) and the block where it
    /// diverged.
    pub rewrites: Vec<String>,
    /// Requests per session (by task).
    pub sessions: HashMap<String, usize>,
    /// Sessions whose first request read nothing from the cache.
    pub cold_starts: Vec<String>,
    /// Distinct system prompts seen (one per agent).
    pub systems: usize,
}

impl CacheStats {
    /// The share of prompt tokens read from the cache.
    pub fn hit_ratio(&self) -> f64 {
        if self.input == 0 {
            0.0
        } else {
            self.cache_read as f64 / self.input as f64
        }
    }
}

/// One block of a request: what identifies it (its JSON without
/// `cache_control`, and its role), its tokens, and whether it is a
/// breakpoint (with its TTL).
struct Block {
    hash: u64,
    tokens: u64,
    breakpoint: Option<Duration>,
}

struct Inner {
    /// Cached prefixes by the hash of their blocks, with their expiry.
    entries: HashMap<u64, Instant>,
    /// Each session's previous request, as block hashes.
    sessions: HashMap<u64, Vec<u64>>,
    /// The system prompts seen.
    systems: std::collections::HashSet<u64>,
    stats: CacheStats,
    /// Simulated time beyond the real clock.
    skew: Duration,
}

/// The cache of one simulated provider account.
pub struct PromptCache {
    rules: CacheRules,
    inner: Mutex<Inner>,
}

impl PromptCache {
    pub fn new(rules: CacheRules) -> PromptCache {
        PromptCache {
            rules,
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                sessions: HashMap::new(),
                systems: std::collections::HashSet::new(),
                stats: CacheStats::default(),
                skew: Duration::ZERO,
            }),
        }
    }

    /// Let simulated time pass (entries expire).
    pub fn advance(&self, by: Duration) {
        self.inner.lock().unwrap().skew += by;
    }

    pub fn stats(&self) -> CacheStats {
        self.inner.lock().unwrap().stats.clone()
    }

    /// Bill an Anthropic Messages request; `Err` is the 400 the API
    /// answers (too many breakpoints).
    pub fn anthropic(&self, body: &Value) -> Result<Billed, String> {
        let (blocks, task) = self.anthropic_blocks(body);
        let breakpoints: Vec<usize> = (0..blocks.len())
            .filter(|&at| blocks[at].breakpoint.is_some())
            .collect();
        if breakpoints.len() > self.rules.max_breakpoints {
            return Err(format!(
                "A maximum of {} blocks with cache_control may be provided. Found {}.",
                self.rules.max_breakpoints,
                breakpoints.len()
            ));
        }
        let model = body["model"].as_str().unwrap_or_default();
        let minimum = if model.contains("haiku") { 2048 } else { 1024 };
        let prefixes = prefix_hashes(model, &blocks);
        let tokens = prefix_tokens(&blocks);
        let mut inner = self.inner.lock().unwrap();
        let now = Instant::now() + inner.skew;
        inner.entries.retain(|_, expires| *expires > now);
        // The longest cached prefix at a breakpoint or within the lookback
        // before one.
        let mut read_end = 0;
        for &at in &breakpoints {
            let earliest = at.saturating_sub(self.rules.lookback);
            if let Some(hit) = (earliest..=at)
                .rev()
                .find(|&end| inner.entries.contains_key(&prefixes[end]))
            {
                read_end = read_end.max(hit + 1);
            }
        }
        if read_end > 0 {
            let ttl = blocks[..read_end]
                .iter()
                .rev()
                .find_map(|block| block.breakpoint)
                .unwrap_or(self.rules.ttl);
            inner.entries.insert(prefixes[read_end - 1], now + ttl);
        }
        let mut written_end = read_end;
        for &at in &breakpoints {
            if tokens[at] < minimum || at < read_end {
                continue;
            }
            let ttl = blocks[at].breakpoint.unwrap_or(self.rules.ttl);
            inner.entries.insert(prefixes[at], now + ttl);
            written_end = written_end.max(at + 1);
        }
        let total = tokens.last().copied().unwrap_or(0);
        let upto = |end: usize| if end == 0 { 0 } else { tokens[end - 1] };
        let billed = Billed {
            input: total,
            cache_read: upto(read_end),
            cache_write: upto(written_end) - upto(read_end),
        };
        record(&mut inner, task, &blocks, billed);
        Ok(billed)
    }

    /// Bill an OpenAI Chat Completions request.
    pub fn openai(&self, body: &Value) -> Billed {
        let (blocks, task) = self.openai_blocks(body);
        let prefixes = prefix_hashes(body["model"].as_str().unwrap_or_default(), &blocks);
        let tokens = prefix_tokens(&blocks);
        let total = tokens.last().copied().unwrap_or(0);
        let mut inner = self.inner.lock().unwrap();
        let now = Instant::now() + inner.skew;
        inner.entries.retain(|_, expires| *expires > now);
        let mut cached = 0;
        if total >= 1024 {
            if let Some(end) = (0..blocks.len())
                .rev()
                .find(|&end| inner.entries.contains_key(&prefixes[end]))
            {
                cached = tokens[end] / 128 * 128;
            }
            let expires = now + self.rules.ttl;
            for hash in &prefixes {
                inner.entries.insert(*hash, expires);
            }
        }
        let billed = Billed {
            input: total,
            cache_read: cached,
            cache_write: 0,
        };
        record(&mut inner, task, &blocks, billed);
        billed
    }

    fn block(&self, kind: &str, value: &Value) -> Block {
        let mut bare = value.clone();
        let breakpoint = bare.as_object_mut().and_then(|object| {
            object.remove("cache_control").map(|control| {
                if control["ttl"] == "1h" {
                    Duration::from_secs(3600)
                } else {
                    self.rules.ttl
                }
            })
        });
        let text = format!("{kind}:{bare}");
        Block {
            hash: hash_of(&text),
            tokens: (self.rules.count)(&text),
            breakpoint,
        }
    }

    /// The blocks of a Messages request and its session's task.
    fn anthropic_blocks(&self, body: &Value) -> (Vec<Block>, (String, String)) {
        let mut blocks = Vec::new();
        for tool in body["tools"].as_array().into_iter().flatten() {
            blocks.push(self.block("tool", tool));
        }
        let mut system = String::new();
        match &body["system"] {
            Value::String(text) => {
                system = text.clone();
                blocks
                    .push(self.block("system", &serde_json::json!({"type": "text", "text": text})));
            }
            Value::Array(list) => {
                for block in list {
                    system.push_str(block["text"].as_str().unwrap_or_default());
                    blocks.push(self.block("system", block));
                }
            }
            _ => {}
        }
        let mut task = None;
        for message in body["messages"].as_array().into_iter().flatten() {
            let role = message["role"].as_str().unwrap_or_default();
            let content = match &message["content"] {
                Value::String(text) => vec![serde_json::json!({"type": "text", "text": text})],
                Value::Array(list) => list.clone(),
                _ => Vec::new(),
            };
            for block in &content {
                if task.is_none()
                    && role == "user"
                    && let Some(text) = block["text"].as_str()
                    && !text.starts_with("<memory>")
                {
                    task = Some(text.to_string());
                }
                blocks.push(self.block(role, block));
            }
        }
        (blocks, (session_of(&system, task), system))
    }

    /// The blocks of a Chat Completions request (tools, then each message)
    /// and its session's task.
    fn openai_blocks(&self, body: &Value) -> (Vec<Block>, (String, String)) {
        let mut blocks = Vec::new();
        for tool in body["tools"].as_array().into_iter().flatten() {
            blocks.push(self.block("tool", tool));
        }
        let mut system = String::new();
        let mut task = None;
        for message in body["messages"].as_array().into_iter().flatten() {
            let role = message["role"].as_str().unwrap_or_default();
            let text = message["content"].as_str().unwrap_or_default();
            if role == "system" {
                system.push_str(text);
            } else if task.is_none() && role == "user" && !text.starts_with("<memory>") {
                task = Some(text.to_string());
            }
            blocks.push(self.block(role, message));
        }
        (blocks, (session_of(&system, task), system))
    }
}

fn session_of(system: &str, task: Option<String>) -> String {
    let task = task.unwrap_or_default();
    let short: String = task.chars().take(60).collect();
    format!("{:016x} {short}", hash_of(&(system, &task)))
}

/// Count the request and check it against its session's previous one.
fn record(
    inner: &mut Inner,
    (session, system): (String, String),
    blocks: &[Block],
    billed: Billed,
) {
    let hashes: Vec<u64> = blocks.iter().map(|block| block.hash).collect();
    let key = hash_of(&session);
    if !inner.sessions.contains_key(&key) && billed.cache_read == 0 {
        inner.stats.cold_starts.push(session[17..].to_string());
    }
    if inner.systems.insert(hash_of(&system)) {
        inner.stats.systems = inner.systems.len();
    }
    if let Some(previous) = inner.sessions.get(&key)
        && !hashes.starts_with(previous)
    {
        let diverged = previous
            .iter()
            .zip(&hashes)
            .take_while(|(a, b)| a == b)
            .count();
        inner.stats.rewrites.push(format!(
            "{} (block {diverged} of {})",
            &session[17..],
            previous.len()
        ));
    }
    inner.sessions.insert(key, hashes);
    let stats = &mut inner.stats;
    stats.requests += 1;
    stats.input += billed.input;
    stats.cache_read += billed.cache_read;
    stats.cache_write += billed.cache_write;
    *stats.sessions.entry(session[17..].to_string()).or_default() += 1;
}

/// The hash of each prefix `blocks[..=at]`; each model has its own cache.
fn prefix_hashes(model: &str, blocks: &[Block]) -> Vec<u64> {
    let mut running = hash_of(&model);
    blocks
        .iter()
        .map(|block| {
            running = hash_of(&(running, block.hash));
            running
        })
        .collect()
}

/// The tokens of each prefix `blocks[..=at]`.
fn prefix_tokens(blocks: &[Block]) -> Vec<u64> {
    let mut running = 0;
    blocks
        .iter()
        .map(|block| {
            running += block.tokens;
            running
        })
        .collect()
}

fn hash_of(value: &impl Hash) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}
