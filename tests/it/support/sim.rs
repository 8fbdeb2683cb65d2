//! A model simulator: a loopback server speaking the OpenAI Chat Completions
//! and Anthropic Messages wire formats that plays a whole mission the way a
//! deterministic model would — every decision is derived from the request
//! alone (the agent from its system prompt, the next step from the
//! conversation), so it plays on after `orch resume` as if nothing happened.
//!
//! It behaves like real models: the Commander re-reads the plan on every
//! wake-up and polls `list_tasks`, Workers poll their background test runs,
//! wording varies with the seed, tool-call arguments arrive split across
//! chunks. And like real providers, on demand: a connection reset after
//! content, an error event after content (OpenAI's `error` object,
//! Anthropic's `overloaded_error`), the Commander's own turn cut
//! mid-stream, two stalls in a row, a 429 storm for every session at once
//! with `retry-after`, an empty turn cut at the output limit, keep-alive
//! comments and nothing else. It is strict as api.openai.com is: a tool call
//! whose results do not follow it at once is answered 400.
//!
//! Faults are the only state that decides what it answers: which request
//! (by its content) already got its fault, so a retried request goes
//! through. Beside them it keeps the provider's prompt cache
//! (`prompt_cache.rs`) and reports each request's cached tokens the way
//! the wire format does; a request with more cache breakpoints than
//! Anthropic allows is refused as the API refuses it.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::http::{End, Recorded, Reply, Server};
use super::prompt_cache::{Billed, CacheRules, CacheStats, PromptCache};

/// Which wire format the simulator speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    OpenAi,
    Anthropic,
}

/// Provider misbehaviour, each on demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// A connection reset after the first content.
    ResetAfterContent,
    /// An error event after the first content (OpenAI `error` object,
    /// Anthropic `overloaded_error`).
    ErrorAfterContent,
    /// The Commander's own turns are cut mid-stream.
    CutCommander,
    /// A stall after the response head, twice in a row for one request.
    TwoStalls,
    /// For a while, every request of every session gets 429 with
    /// `retry-after`.
    Storm429,
    /// A turn cut at the output limit with no text and no tool call.
    EmptyLengthCut,
    /// Keep-alive comments only, forever.
    KeepAliveOnly,
}

/// One plan item the simulated team implements.
#[derive(Debug, Clone)]
pub struct Item {
    pub id: &'static str,
    pub text: &'static str,
    /// The file the Worker writes, and what it writes there.
    pub file: &'static str,
    pub content: &'static str,
    /// The command a Worker runs to check its item.
    pub test: &'static str,
}

/// The mission the simulator plays.
#[derive(Debug, Clone)]
pub struct Work {
    pub items: Vec<Item>,
    /// The command the Reviewer runs.
    pub test_all: &'static str,
    /// The file the Planner reads first.
    pub overview: &'static str,
}

/// How the simulator plays.
#[derive(Debug, Clone)]
pub struct Play {
    pub wire: Wire,
    pub seed: u64,
    pub faults: BTreeSet<Fault>,
    /// Percent of requests that get one of the faults (the storm aside).
    pub fault_rate: u64,
}

/// What the simulator saw, for assertions and benchmarks.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub requests: usize,
    pub faults: BTreeMap<String, usize>,
    /// Requests refused because a tool call had no result.
    pub invalid: Vec<String>,
    /// Output tokens (words, as the simulator counts them) sent in turns
    /// that a fault then cut.
    pub cut_tokens: u64,
}

struct State {
    work: Work,
    play: Play,
    /// Attempts seen per request fingerprint.
    attempts: Mutex<HashMap<u64, u32>>,
    storm: Mutex<Option<Instant>>,
    tally: Mutex<Tally>,
    cache: PromptCache,
}

/// A running simulator.
pub struct Sim {
    server: Server,
    state: Arc<State>,
}

impl Sim {
    pub async fn start(work: Work, play: Play) -> Sim {
        let state = Arc::new(State {
            work,
            play,
            attempts: Mutex::default(),
            storm: Mutex::default(),
            tally: Mutex::default(),
            cache: PromptCache::new(CacheRules::default()),
        });
        let shared = state.clone();
        let server = Server::responding(move |request| shared.answer(request)).await;
        Sim { server, state }
    }

    /// The base URL orch is pointed at (OpenAI's includes `/v1`).
    pub fn base_url(&self) -> String {
        match self.state.play.wire {
            Wire::OpenAi => format!("{}/v1", self.server.url()),
            Wire::Anthropic => self.server.url(),
        }
    }

    pub fn tally(&self) -> Tally {
        self.state.tally.lock().unwrap().clone()
    }

    /// What the provider's prompt cache saw.
    pub fn cache(&self) -> CacheStats {
        self.state.cache.stats()
    }
}

/// The agents the simulator plays, told apart by their system prompts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Agent {
    Commander,
    Planner,
    Worker,
    Reviewer,
    Compactor,
}

/// One tool call in a conversation.
#[derive(Debug, Clone)]
struct Call {
    id: String,
    name: String,
    args: Value,
}

/// A conversation, whatever the wire format.
#[derive(Debug, Clone)]
enum Msg {
    User(String),
    Assistant { calls: Vec<Call> },
    Tool { id: String, content: String },
}

/// What the simulated model answers.
#[derive(Debug, Clone, Default)]
struct Turn {
    text: String,
    calls: Vec<(String, Value)>,
}

impl Turn {
    fn say(text: impl Into<String>) -> Turn {
        Turn {
            text: text.into(),
            calls: Vec::new(),
        }
    }

    fn call(mut self, name: &str, args: Value) -> Turn {
        self.calls.push((name.to_string(), args));
        self
    }
}

fn hash_of(parts: &impl Hash) -> u64 {
    let mut hasher = DefaultHasher::new();
    parts.hash(&mut hasher);
    hasher.finish()
}

impl State {
    fn answer(&self, request: &Recorded) -> Reply {
        self.tally.lock().unwrap().requests += 1;
        let (system, messages) = match self.play.wire {
            Wire::OpenAi => parse_openai(&request.body),
            Wire::Anthropic => parse_anthropic(&request.body),
        };
        if let Some(missing) = unanswered_call(&messages) {
            self.tally.lock().unwrap().invalid.push(missing.clone());
            return self.invalid(&missing);
        }
        let billed = match bill(&self.cache, self.play.wire, &request.body) {
            Ok(billed) => billed,
            Err((message, refused)) => {
                self.tally.lock().unwrap().invalid.push(message);
                return refused;
            }
        };
        // A summary asked of a session's own conversation comes as its last
        // message; one asked apart has a system prompt of its own.
        let agent = match messages.last() {
            Some(Msg::User(text)) if text.starts_with(orch::session::SUMMARY_REQUEST) => {
                Agent::Compactor
            }
            _ => agent_of(&system),
        };
        let fingerprint = hash_of(&(format!("{agent:?}"), format!("{messages:?}")));
        let attempt = {
            let mut attempts = self.attempts.lock().unwrap();
            let count = attempts.entry(fingerprint).or_insert(0);
            *count += 1;
            *count
        };
        if let Some(reply) = self.storm() {
            return reply;
        }
        let turn = match agent {
            Agent::Commander => self.commander(&messages),
            Agent::Planner => self.planner(&messages),
            Agent::Worker => self.worker(&messages),
            Agent::Reviewer => self.reviewer(&messages),
            Agent::Compactor => {
                Turn::say("Summary: the task and the files changed so far; the tests were run.")
            }
        };
        let fault = self.fault(agent, fingerprint, attempt);
        if let Some(fault) = fault {
            *self
                .tally
                .lock()
                .unwrap()
                .faults
                .entry(format!("{fault:?}"))
                .or_default() += 1;
        }
        let max_tokens = request.body["max_tokens"]
            .as_u64()
            .or_else(|| request.body["max_completion_tokens"].as_u64())
            .unwrap_or(4096);
        self.encode(
            &turn,
            fault,
            fingerprint,
            Usage {
                prompt: billed,
                max_tokens,
            },
        )
    }

    /// During a storm, everyone gets 429: the first request past the fifth
    /// opens it for 600 ms.
    fn storm(&self) -> Option<Reply> {
        if !self.play.faults.contains(&Fault::Storm429) {
            return None;
        }
        let requests = self.tally.lock().unwrap().requests;
        let mut storm = self.storm.lock().unwrap();
        let started = match *storm {
            Some(at) => at,
            None if requests > 5 => *storm.insert(Instant::now()),
            None => return None,
        };
        if started.elapsed() > Duration::from_millis(600) {
            return None;
        }
        *self
            .tally
            .lock()
            .unwrap()
            .faults
            .entry("Storm429".into())
            .or_default() += 1;
        let body = match self.play.wire {
            Wire::OpenAi => {
                json!({"error": {"message": "Rate limit reached for requests", "type": "requests", "code": "rate_limit_exceeded"}})
            }
            Wire::Anthropic => {
                json!({"type": "error", "error": {"type": "rate_limit_error", "message": "Number of requests has exceeded your rate limit"}})
            }
        };
        Some(Reply::json(429, &body).header("retry-after", "0.3"))
    }

    /// Which fault this request gets, if any: at most one per request, only
    /// on its first attempt (a second for `TwoStalls`).
    fn fault(&self, agent: Agent, fingerprint: u64, attempt: u32) -> Option<Fault> {
        let play = &self.play;
        let draw = hash_of(&(play.seed, fingerprint)) % 100;
        if play.faults.contains(&Fault::TwoStalls) && attempt <= 2 && draw < play.fault_rate / 2 {
            return Some(Fault::TwoStalls);
        }
        if attempt > 1 {
            return None;
        }
        if agent == Agent::Commander
            && play.faults.contains(&Fault::CutCommander)
            && draw.is_multiple_of(3)
        {
            return Some(Fault::CutCommander);
        }
        let candidates: Vec<Fault> = play
            .faults
            .iter()
            .copied()
            .filter(|fault| {
                !matches!(
                    fault,
                    Fault::Storm429 | Fault::CutCommander | Fault::TwoStalls
                )
            })
            .collect();
        if candidates.is_empty() || draw >= play.fault_rate {
            return None;
        }
        Some(candidates[(draw as usize / 7) % candidates.len()])
    }

    fn invalid(&self, call: &str) -> Reply {
        let body = match self.play.wire {
            Wire::OpenAi => json!({"error": {
                "message": format!("An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {call}"),
                "type": "invalid_request_error", "param": "messages", "code": null}}),
            Wire::Anthropic => json!({"type": "error", "error": {"type": "invalid_request_error",
                "message": format!("messages: `tool_use` ids were found without `tool_result` blocks immediately after: {call}. Each `tool_use` block must have a corresponding `tool_result` block in the next message.")}}),
        };
        Reply::json(400, &body)
    }

    /// A phrase picked by the seed and the conversation, so wording varies
    /// between runs but not between retries.
    fn pick<'a>(&self, options: &[&'a str], salt: usize) -> &'a str {
        options[(hash_of(&(self.play.seed, salt)) as usize) % options.len()]
    }

    fn commander(&self, messages: &[Msg]) -> Turn {
        let since = since_last_turn(messages);
        let woke = since.iter().any(|m| matches!(m, Msg::User(_))) || !has_turns(messages);
        // Every wake-up starts by reading the plan again.
        if woke {
            return Turn::say(self.pick(
                &[
                    "Let me check the plan.",
                    "Reading the plan first.",
                    "Checking where the plan stands.",
                ],
                messages.len(),
            ))
            .call("read_todo", json!({}));
        }
        let last = last_calls(messages);
        let names: Vec<&str> = last.iter().map(|c| c.name.as_str()).collect();
        if names.contains(&"delegate_task") && !names.contains(&"read_todo") {
            let planner = last
                .iter()
                .any(|c| c.name == "delegate_task" && c.args["agent"] == "Planner");
            if planner {
                return Turn::say("The Planner is done; reading the plan.")
                    .call("read_todo", json!({}));
            }
            if hash_of(&(self.play.seed, messages.len())).is_multiple_of(2) {
                return Turn::say("Checking on the tasks.").call("list_tasks", json!({}));
            }
            return Turn::say(self.pick(
                &["Waiting for the tasks.", "The team is working; I'll wait."],
                messages.len(),
            ));
        }
        if names == ["list_tasks"] && !interrupted_before_last_look(messages) {
            return Turn::say("Waiting for the running tasks to report.");
        }
        let plan = result_of(messages, "read_todo").unwrap_or_default();
        let items = plan_items(&plan);
        if items.is_empty() {
            if delegated(messages, "Planner").is_empty() {
                return Turn::say("No plan yet: the Planner writes it.").call(
                    "delegate_task",
                    json!({"agent": "Planner", "description": "plan the mission", "prompt": "Explore the project and write the plan with add_todo, one item per module.", "background": false}),
                );
            }
            return Turn::say("The plan is still empty; stopping here.");
        }
        if items.values().all(|status| *status == 'x') {
            return Turn::say(self.pick(
                &[
                    "All items are done.",
                    "Every plan item is complete.",
                    "Done: the plan is complete.",
                ],
                messages.len(),
            ));
        }
        // A delegation orch says was interrupted may or may not have
        // started a task: look at the tasks before delegating again.
        if interrupted_since_last_look(messages) {
            return Turn::say("Some delegations were interrupted; checking the tasks.")
                .call("list_tasks", json!({}));
        }
        // Items nobody works on go to Workers, in parallel: new ones, and
        // ones whose Worker failed (twice at the most).
        let mut worked = delegations(messages, "Worker");
        worked.extend(listed(messages, "Worker"));
        let failed = reports(messages, "Worker", "failed");
        let mut turn = Turn::say(self.pick(
            &["Delegating the open items.", "Handing items to Workers."],
            items.len(),
        ));
        for item in &self.work.items {
            let tries = worked.iter().filter(|id| *id == item.id).count();
            let failures = failed.iter().filter(|id| *id == item.id).count();
            let open = items.get(item.id).is_some_and(|status| *status != 'x');
            if open && failures >= tries && tries < 3 {
                turn = turn.call(
                    "delegate_task",
                    json!({"agent": "Worker", "description": format!("{}: {}", item.id, item.text),
                        "prompt": format!("Task {}: {} (in {}).", item.id, item.text, item.file), "background": true}),
                );
            }
        }
        if !turn.calls.is_empty() {
            return turn;
        }
        // Items Workers finished go to the Reviewer once.
        let finished: BTreeSet<String> = reports(messages, "Worker", "completed")
            .into_iter()
            .collect();
        let reviewed = delegated(messages, "Reviewer");
        let ready: Vec<&str> = self
            .work
            .items
            .iter()
            .filter(|item| items.get(item.id).is_some_and(|s| *s != 'x'))
            .filter(|item| finished.contains(item.id) && !reviewed.contains(item.id))
            .map(|item| item.id)
            .collect();
        if !ready.is_empty() {
            let ids = ready.join(", ");
            return Turn::say(format!("{ids} are ready for review.")).call(
                "delegate_task",
                json!({"agent": "Reviewer", "description": format!("review {ids}"),
                    "prompt": format!("Review {ids}: run the tests and mark each completed if they pass."), "background": true}),
            );
        }
        Turn::say(self.pick(
            &["Waiting for the tasks.", "Still waiting on the team."],
            messages.len(),
        ))
    }

    fn planner(&self, messages: &[Msg]) -> Turn {
        if !has_turns(messages) {
            return Turn::say("Let me look at the project.")
                .call("list", json!({}))
                .call("read", json!({"path": self.work.overview}));
        }
        let last = last_calls(messages);
        let added = last.iter().filter(|c| c.name == "add_todo");
        let unsure = added
            .clone()
            .any(|call| !result_for(messages, &call.id).is_some_and(|r| r.starts_with("added")));
        if last.iter().any(|c| c.name == "add_todo") && !unsure {
            let ids: Vec<&str> = self.work.items.iter().map(|item| item.id).collect();
            return Turn::say(format!("Plan written: {}.", ids.join(", ")));
        }
        if unsure {
            // Some additions may not have happened: look before adding again.
            return Turn::say("Checking the plan.").call("read_todo", json!({}));
        }
        // The plan as it stands (after a check), or nothing yet.
        let have = if last.iter().any(|c| c.name == "read_todo") {
            plan_items(&result_of(messages, "read_todo").unwrap_or_default())
        } else {
            BTreeMap::new()
        };
        let mut turn =
            Turn::say(self.pick(&["One item per module.", "Each module is its own item."], 1));
        for item in self
            .work
            .items
            .iter()
            .filter(|item| !have.contains_key(item.id))
        {
            turn = turn.call(
                "add_todo",
                json!({"id": item.id, "text": item.text, "meta": {"agent": "Worker", "file": item.file}}),
            );
        }
        if turn.calls.is_empty() {
            let ids: Vec<&str> = self.work.items.iter().map(|item| item.id).collect();
            return Turn::say(format!("Plan written: {}.", ids.join(", ")));
        }
        turn
    }

    fn worker(&self, messages: &[Msg]) -> Turn {
        let task = first_user(messages);
        let Some(item) = self
            .work
            .items
            .iter()
            .find(|item| task.contains(&format!("Task {}:", item.id)))
        else {
            return Turn::say("I do not know this task.");
        };
        if !has_turns(messages) {
            return Turn::say(format!("Starting {}.", item.id))
                .call("update_todo", json!({"id": item.id, "status": "progress"}))
                .call("read", json!({"path": item.file}));
        }
        let last = last_calls(messages);
        let Some(call) = last.last() else {
            return Turn::say(format!("{} done.", item.id));
        };
        let background = hash_of(&(self.play.seed, item.id)).is_multiple_of(2);
        match call.name.as_str() {
            "read" => Turn::say(format!("Writing {}.", item.file))
                .call("write", json!({"path": item.file, "content": item.content})),
            // Writing again is harmless: a write orch says was interrupted
            // is simply done again.
            "write"
                if result_for(messages, &call.id).is_some_and(|r| r.starts_with("interrupted")) =>
            {
                Turn::say(format!("Writing {} again.", item.file))
                    .call("write", json!({"path": item.file, "content": item.content}))
            }
            // Refused as unseen or stale (after a resume, the session's
            // record of what it read is gone): read it again, as models do.
            "write"
                if result_for(messages, &call.id).is_some_and(|r| {
                    r.contains("read it first") || r.contains("read it again first")
                }) =>
            {
                Turn::say(format!("Reading {} again.", item.file))
                    .call("read", json!({"path": item.file}))
            }
            "write" if background => Turn::say("Running the tests in the background.").call(
                "run_background",
                json!({"command": item.test, "label": item.id}),
            ),
            "write" => Turn::say("Running the tests.").call("bash", json!({"command": item.test})),
            "run_background" | "check_background" | "bash" => {
                let output = result_for(messages, &call.id).unwrap_or_default();
                let job = job_of(messages);
                let command = call.args["command"].as_str().unwrap_or_default();
                let effect = format!("mkdir -p effects && echo {0} >> effects/{0}.log", item.id);
                let check = format!(
                    "grep -c '^{0}$' effects/{0}.log 2>/dev/null || true",
                    item.id
                );
                if command == effect && !output.starts_with("interrupted") {
                    return Turn::say(format!(
                        "{} done: {} is implemented and its tests pass.",
                        item.id, item.file
                    ));
                }
                // A call orch says was interrupted may or may not have run:
                // look before doing it again, as the message asks.
                if command == effect {
                    return Turn::say("Checking whether the log line was written.")
                        .call("bash", json!({"command": check}));
                }
                if command == check {
                    let written = output
                        .lines()
                        .next()
                        .and_then(|line| line.trim().parse::<u32>().ok())
                        .unwrap_or(0);
                    if written > 0 {
                        return Turn::say(format!("{} done: the log line is there.", item.id));
                    }
                    return Turn::say("Writing the log line.")
                        .call("bash", json!({"command": effect}));
                }
                // The pipe through `tail` always exits 0: the output says
                // whether the tests passed.
                let failed = ["FAILED", "error:", "error[", " failed in", " failed,"]
                    .iter()
                    .any(|sign| output.contains(sign));
                let passed = !failed
                    && ((call.name == "bash"
                        && output.contains("exit code 0")
                        && command == item.test)
                        || (call.name == "check_background"
                            && output.contains("exited with code 0")));
                if passed {
                    // The task's side effect: one line per item, once.
                    return Turn::say("Tests pass; logging the item.")
                        .call("bash", json!({"command": effect}));
                }
                let ended = call.name == "check_background" && !output.contains("running for");
                if let Some(job) = job.filter(|_| !ended) {
                    // Poll, and now and then wait a little between polls.
                    let polls = messages
                        .iter()
                        .filter(|m| matches!(m, Msg::Assistant { calls, .. } if calls.iter().any(|c| c.name == "check_background")))
                        .count();
                    if call.name == "check_background" && polls % 3 == 2 {
                        return Turn::say("Still running; waiting a moment.")
                            .call("bash", json!({"command": "sleep 0.3"}));
                    }
                    return Turn::say("Checking the test run.")
                        .call("check_background", json!({"id": job}));
                }
                Turn::say("The tests failed; running them again.")
                    .call("bash", json!({"command": item.test}))
            }
            _ => Turn::say(format!("{} done.", item.id)),
        }
    }

    fn reviewer(&self, messages: &[Msg]) -> Turn {
        let task = first_user(messages);
        let ids: Vec<&str> = self
            .work
            .items
            .iter()
            .map(|item| item.id)
            .filter(|id| task.contains(id))
            .collect();
        if !has_turns(messages) {
            return Turn::say("Running the project's tests.")
                .call("bash", json!({"command": self.work.test_all}));
        }
        let last = last_calls(messages);
        if last.iter().any(|c| c.name == "update_todo") {
            return Turn::say(format!("Approved {}.", ids.join(", ")));
        }
        let output = last
            .first()
            .and_then(|call| result_for(messages, &call.id))
            .unwrap_or_default();
        let passed = output.contains("exit code 0");
        let status = if passed { "completed" } else { "failed" };
        let mut turn = Turn::say(if passed {
            "The tests pass."
        } else {
            "The tests fail."
        });
        for id in ids {
            turn = turn.call("update_todo", json!({"id": id, "status": status}));
        }
        turn
    }

    /// The turn as a response in the wire format, with `fault` applied.
    fn encode(&self, turn: &Turn, fault: Option<Fault>, salt: u64, usage: Usage) -> Reply {
        let chunk = 7 + (hash_of(&(self.play.seed, salt)) % 40) as usize;
        if fault == Some(Fault::EmptyLengthCut) {
            let body = match self.play.wire {
                Wire::OpenAi => openai_body(&Turn::default(), salt, "length", usage),
                Wire::Anthropic => anthropic_body(&Turn::default(), salt, "max_tokens", usage),
            };
            return Reply::sse(&body, chunk);
        }
        let body = match self.play.wire {
            Wire::OpenAi => openai_body(
                turn,
                salt,
                if turn.calls.is_empty() {
                    "stop"
                } else {
                    "tool_calls"
                },
                usage,
            ),
            Wire::Anthropic => anthropic_body(
                turn,
                salt,
                if turn.calls.is_empty() {
                    "end_turn"
                } else {
                    "tool_use"
                },
                usage,
            ),
        };
        // A cut comes after the first content event has arrived whole.
        let events_end = first_content_end(&body);
        let head = &body[..events_end];
        let torn = &body[..(events_end + 15).min(body.len())];
        let words = turn.text.split_whitespace().count() as u64;
        match fault {
            None | Some(Fault::EmptyLengthCut) | Some(Fault::Storm429) => Reply::sse(&body, chunk),
            Some(Fault::ResetAfterContent) | Some(Fault::CutCommander) => {
                self.tally.lock().unwrap().cut_tokens += words;
                Reply::sse(torn, chunk).end(End::Reset)
            }
            Some(Fault::ErrorAfterContent) => {
                self.tally.lock().unwrap().cut_tokens += words;
                let error = match self.play.wire {
                    Wire::OpenAi => format!(
                        "{head}data: {}\n\n",
                        json!({"error": {"message": "Upstream provider disconnected", "code": 502}})
                    ),
                    Wire::Anthropic => format!(
                        "{head}event: error\ndata: {}\n\n",
                        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
                    ),
                };
                Reply::sse(&error, chunk)
            }
            Some(Fault::TwoStalls) => Reply::sse("", 1).end(End::Stall),
            Some(Fault::KeepAliveOnly) => {
                Reply::sse(": keep-alive\n\n", 64).end(End::KeepAlive(Duration::from_millis(100)))
            }
        }
    }
}

/// Bill a request through `cache` as `wire`'s provider does; a request
/// the provider refuses (too many breakpoints) is the reason and the 400
/// it answers.
pub fn bill(cache: &PromptCache, wire: Wire, body: &Value) -> Result<Billed, (String, Reply)> {
    match wire {
        Wire::OpenAi => Ok(cache.openai(body)),
        Wire::Anthropic => cache.anthropic(body).map_err(|message| {
            let refused = Reply::json(
                400,
                &json!({"type": "error", "error": {"type": "invalid_request_error", "message": message}}),
            );
            (message, refused)
        }),
    }
}

/// A whole turn in `wire`'s format: `text`, then `calls` (name and
/// arguments), ending as a model ends such a turn.
pub fn turn_reply(
    wire: Wire,
    text: &str,
    calls: &[(String, Value)],
    usage: Usage,
    salt: u64,
) -> Reply {
    let turn = Turn {
        text: text.to_string(),
        calls: calls.to_vec(),
    };
    let body = match wire {
        Wire::OpenAi => openai_body(
            &turn,
            salt,
            if calls.is_empty() {
                "stop"
            } else {
                "tool_calls"
            },
            usage,
        ),
        Wire::Anthropic => anthropic_body(
            &turn,
            salt,
            if calls.is_empty() {
                "end_turn"
            } else {
                "tool_use"
            },
            usage,
        ),
    };
    Reply::sse(&body, 64)
}

/// Where the first event carrying content (a text delta) ends.
fn first_content_end(body: &str) -> usize {
    let mut at = 0;
    for event in body.split_inclusive("\n\n") {
        at += event.len();
        let content = event.contains("\"text_delta\"")
            || (event.contains("\"content\":\"") && !event.contains("\"content\":\"\""));
        if content {
            return at;
        }
    }
    body.len() / 2
}

/// Tool call ids unique in a conversation and stable across retries.
fn call_id(salt: u64, index: usize) -> String {
    format!("call_{:x}_{index}", salt & 0xffff_ffff)
}

/// What a response reports as used.
#[derive(Clone, Copy)]
/// A turn's usage as the simulated provider reports it.
pub struct Usage {
    /// The request's prompt tokens, as the cache billed them.
    pub prompt: Billed,
    /// The request's `max_tokens`: what a turn cut at the limit used.
    pub max_tokens: u64,
}

fn openai_body(turn: &Turn, salt: u64, finish: &str, usage: Usage) -> String {
    let mut events = Vec::new();
    let chunk = |delta: Value| json!({"id": "chatcmpl-sim", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": null}]});
    events.push(chunk(json!({"role": "assistant", "content": ""})));
    for piece in pieces(&turn.text, 12) {
        events.push(chunk(json!({"content": piece})));
    }
    for (index, (name, args)) in turn.calls.iter().enumerate() {
        let arguments = args.to_string();
        events.push(chunk(json!({"tool_calls": [{"index": index, "id": call_id(salt, index), "type": "function", "function": {"name": name, "arguments": ""}}]})));
        // Arguments arrive in fragments, as streaming models send them.
        for piece in pieces(&arguments, 9) {
            events.push(chunk(
                json!({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}),
            ));
        }
    }
    events.push(json!({"id": "chatcmpl-sim", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}));
    let output = if finish == "length" {
        usage.max_tokens
    } else {
        output_tokens(turn)
    };
    let prompt = usage.prompt.input;
    let cached = usage.prompt.cache_read;
    events.push(json!({"id": "chatcmpl-sim", "object": "chat.completion.chunk", "choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt + output, "prompt_tokens_details": {"cached_tokens": cached}}}));
    let mut body: String = events
        .iter()
        .map(|event| format!("data: {event}\n\n"))
        .collect();
    body.push_str("data: [DONE]\n\n");
    body
}

fn anthropic_body(turn: &Turn, salt: u64, stop: &str, usage: Usage) -> String {
    let mut events: Vec<(&str, Value)> = vec![(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_sim", "type": "message", "role": "assistant", "content": [], "model": "sim", "stop_reason": null, "usage": {
            // Anthropic counts cache reads and writes beside the input.
            "input_tokens": usage.prompt.input - usage.prompt.cache_read - usage.prompt.cache_write,
            "cache_read_input_tokens": usage.prompt.cache_read,
            "cache_creation_input_tokens": usage.prompt.cache_write,
            "output_tokens": 1}}}),
    )];
    let mut index = 0;
    if !turn.text.is_empty() {
        events.push(("content_block_start", json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}})));
        for piece in pieces(&turn.text, 12) {
            events.push(("content_block_delta", json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}})));
        }
        events.push((
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
        index += 1;
    }
    for (number, (name, args)) in turn.calls.iter().enumerate() {
        events.push(("content_block_start", json!({"type": "content_block_start", "index": index, "content_block": {"type": "tool_use", "id": call_id(salt, number), "name": name, "input": {}}})));
        for piece in pieces(&args.to_string(), 9) {
            events.push(("content_block_delta", json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": piece}})));
        }
        events.push((
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
        index += 1;
    }
    let output = if stop == "max_tokens" {
        usage.max_tokens
    } else {
        output_tokens(turn)
    };
    events.push(("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": output}})));
    events.push(("message_stop", json!({"type": "message_stop"})));
    events
        .iter()
        .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
        .collect()
}

fn output_tokens(turn: &Turn) -> u64 {
    (turn.text.len()
        + turn
            .calls
            .iter()
            .map(|(_, args)| args.to_string().len())
            .sum::<usize>()) as u64
        / 4
        + 1
}

/// `text` in pieces of about `size` characters.
fn pieces(text: &str, size: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars
        .chunks(size)
        .map(|chunk| chunk.iter().collect())
        .collect()
}

fn agent_of(system: &str) -> Agent {
    if system.starts_with("You are the Commander") {
        Agent::Commander
    } else if system.starts_with("You are the Planner") {
        Agent::Planner
    } else if system.starts_with("You are a Worker") {
        Agent::Worker
    } else if system.starts_with("You are the Reviewer") {
        Agent::Reviewer
    } else {
        Agent::Compactor
    }
}

fn parse_openai(body: &Value) -> (String, Vec<Msg>) {
    let mut system = String::new();
    let mut messages = Vec::new();
    for message in body["messages"].as_array().into_iter().flatten() {
        let content = text_of(&message["content"]);
        match message["role"].as_str().unwrap_or_default() {
            "system" => system.push_str(&content),
            "user" => messages.push(Msg::User(content)),
            "assistant" => messages.push(Msg::Assistant {
                calls: message["tool_calls"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|call| Call {
                        id: call["id"].as_str().unwrap_or_default().to_string(),
                        name: call["function"]["name"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                        args: serde_json::from_str(
                            call["function"]["arguments"].as_str().unwrap_or("{}"),
                        )
                        .unwrap_or(Value::Null),
                    })
                    .collect(),
            }),
            "tool" => messages.push(Msg::Tool {
                id: message["tool_call_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                content,
            }),
            _ => {}
        }
    }
    (system, messages)
}

fn parse_anthropic(body: &Value) -> (String, Vec<Msg>) {
    let system = text_of(&body["system"]);
    let mut messages = Vec::new();
    for message in body["messages"].as_array().into_iter().flatten() {
        let role = message["role"].as_str().unwrap_or_default();
        let blocks: Vec<Value> = match &message["content"] {
            Value::String(text) => vec![json!({"type": "text", "text": text})],
            Value::Array(blocks) => blocks.clone(),
            _ => Vec::new(),
        };
        if role == "assistant" {
            let calls = blocks
                .iter()
                .filter(|b| b["type"] == "tool_use")
                .map(|b| Call {
                    id: b["id"].as_str().unwrap_or_default().to_string(),
                    name: b["name"].as_str().unwrap_or_default().to_string(),
                    args: b["input"].clone(),
                })
                .collect();
            messages.push(Msg::Assistant { calls });
            continue;
        }
        let mut text = String::new();
        for block in &blocks {
            match block["type"].as_str() {
                Some("tool_result") => {
                    if !text.is_empty() {
                        // Text before a result is out of place: kept so.
                        messages.push(Msg::User(std::mem::take(&mut text)));
                    }
                    messages.push(Msg::Tool {
                        id: block["tool_use_id"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                        content: text_of(&block["content"]),
                    });
                }
                Some("text") => text.push_str(block["text"].as_str().unwrap_or_default()),
                _ => {}
            }
        }
        if !text.is_empty() {
            messages.push(Msg::User(text));
        }
    }
    (system, messages)
}

/// Text of a string or a list of text blocks.
fn text_of(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|part| part["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// A tool call whose result does not follow it at once. As api.openai.com
/// checks, an assistant message with tool calls must be followed
/// immediately by tool messages answering every call id; as Anthropic
/// checks, the next user message must start with a `tool_result` block for
/// every `tool_use` id (`parse_anthropic` keeps text that comes before a
/// result in front of it, so the same rule covers both).
fn unanswered_call(messages: &[Msg]) -> Option<String> {
    messages.iter().enumerate().find_map(|(at, m)| {
        let Msg::Assistant { calls } = m else {
            return None;
        };
        let answered: BTreeSet<&str> = messages[at + 1..]
            .iter()
            .map_while(|next| match next {
                Msg::Tool { id, .. } => Some(id.as_str()),
                _ => None,
            })
            .collect();
        calls
            .iter()
            .find(|call| !answered.contains(call.id.as_str()))
            .map(|call| call.id.clone())
    })
}

fn has_turns(messages: &[Msg]) -> bool {
    messages.iter().any(|m| matches!(m, Msg::Assistant { .. }))
}

/// The messages after the model's last turn.
fn since_last_turn(messages: &[Msg]) -> &[Msg] {
    let start = messages
        .iter()
        .rposition(|m| matches!(m, Msg::Assistant { .. }))
        .map_or(0, |at| at + 1);
    &messages[start..]
}

fn last_calls(messages: &[Msg]) -> Vec<Call> {
    messages
        .iter()
        .rev()
        .find_map(|m| match m {
            Msg::Assistant { calls, .. } => Some(calls.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

fn first_user(messages: &[Msg]) -> String {
    messages
        .iter()
        .find_map(|m| match m {
            Msg::User(text) if !text.starts_with("<memory>") => Some(text.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// The result of the call with id `id`.
fn result_for(messages: &[Msg], id: &str) -> Option<String> {
    messages.iter().find_map(|m| match m {
        Msg::Tool {
            id: result,
            content,
        } if result == id => Some(content.clone()),
        _ => None,
    })
}

/// The latest result of a call of `tool`.
fn result_of(messages: &[Msg], tool: &str) -> Option<String> {
    let id = messages.iter().rev().find_map(|m| match m {
        Msg::Assistant { calls, .. } => calls
            .iter()
            .rev()
            .find(|c| c.name == tool)
            .map(|c| c.id.clone()),
        _ => None,
    })?;
    result_for(messages, &id)
}

/// The background job a Worker started (`started bg_3 ...`).
fn job_of(messages: &[Msg]) -> Option<String> {
    let output = result_of(messages, "run_background")?;
    let rest = output.strip_prefix("started ")?;
    Some(rest.split_whitespace().next()?.to_string())
}

/// `[x] T1: text` lines of a `read_todo` result: id → status marker.
fn plan_items(plan: &str) -> BTreeMap<String, char> {
    plan.lines()
        .filter_map(|line| {
            let line = line.trim_start();
            let status = line.strip_prefix('[')?.chars().next()?;
            let rest = line.get(4..)?;
            let id = rest.split(':').next()?.trim();
            (!id.is_empty() && !id.contains(' ')).then(|| (id.to_string(), status))
        })
        .collect()
}

/// Plan item ids mentioned in the descriptions of tasks delegated to
/// `agent`, once per delegation that took effect (an interrupted one is
/// known only from `list_tasks`).
fn delegations(messages: &[Msg], agent: &str) -> Vec<String> {
    messages
        .iter()
        .filter_map(|m| match m {
            Msg::Assistant { calls, .. } => Some(calls),
            _ => None,
        })
        .flatten()
        .filter(|call| call.name == "delegate_task" && call.args["agent"] == agent)
        .filter(|call| {
            !result_for(messages, &call.id).is_some_and(|r| r.starts_with("interrupted"))
        })
        .flat_map(|call| ids_in(call.args["description"].as_str().unwrap_or_default()))
        .collect()
}

/// Plan item ids of `agent` tasks in the latest `list_tasks` result.
fn listed(messages: &[Msg], agent: &str) -> Vec<String> {
    let rows = result_of(messages, "list_tasks").unwrap_or_default();
    rows.lines()
        .filter(|row| row.split_whitespace().nth(1) == Some(agent))
        .flat_map(ids_in)
        .collect()
}

/// Whether a delegation was interrupted after the latest `list_tasks`.
fn interrupted_since_last_look(messages: &[Msg]) -> bool {
    let look = last_call_index(messages, "list_tasks");
    interrupted_delegation_index(messages).is_some_and(|at| look.is_none_or(|look| at > look))
}

/// Whether a delegation was interrupted before the latest `list_tasks`
/// (that look is what the next step decides on).
fn interrupted_before_last_look(messages: &[Msg]) -> bool {
    let look = last_call_index(messages, "list_tasks");
    interrupted_delegation_index(messages).is_some_and(|at| look.is_some_and(|look| at < look))
}

fn last_call_index(messages: &[Msg], tool: &str) -> Option<usize> {
    messages.iter().rposition(
        |m| matches!(m, Msg::Assistant { calls, .. } if calls.iter().any(|c| c.name == tool)),
    )
}

fn interrupted_delegation_index(messages: &[Msg]) -> Option<usize> {
    messages.iter().rposition(|m| {
        matches!(m, Msg::Assistant { calls, .. } if calls.iter().any(|c| {
            c.name == "delegate_task"
                && result_for(messages, &c.id).is_some_and(|r| r.starts_with("interrupted"))
        }))
    })
}

fn delegated(messages: &[Msg], agent: &str) -> BTreeSet<String> {
    delegations(messages, agent).into_iter().collect()
}

/// Plan item ids of `agent` tasks that reported `status`, once per report.
fn reports(messages: &[Msg], agent: &str, status: &str) -> Vec<String> {
    let marker = format!("({agent}, \"");
    let ended = format!("\"): {status}");
    messages
        .iter()
        .filter_map(|m| match m {
            Msg::User(text) | Msg::Tool { content: text, .. } => Some(text),
            _ => None,
        })
        .flat_map(|text| text.split("\n\n"))
        .filter(|report| report.contains(&marker) && report.contains(&ended))
        .flat_map(|report| ids_in(report.split("\"): ").next().unwrap_or_default()))
        .collect()
}

/// `T1`, `T12`... in `text`.
fn ids_in(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| {
            word.len() > 1 && word.starts_with('T') && word[1..].chars().all(|c| c.is_ascii_digit())
        })
        .map(str::to_string)
        .collect()
}
