//! The metrics fold: model latency and tool success per agent, latency and
//! success per tool, tokens (with the share read from prompt caches) and
//! cost per session, what plugins recorded — all folded from events, so
//! the live view, `orch metrics` (from a mission's journal) and the
//! `show_metrics` tool (from the live bus) show the same numbers.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::events::{Envelope, Event, EventSink, MissionOutcome};
use crate::models::Prices;
use crate::provider::Usage;
use crate::tools::metrics::MetricsSource;

/// Latency samples in milliseconds.
#[derive(Debug, Clone, Default)]
struct Samples(Vec<u64>);

impl Samples {
    fn push(&mut self, ms: u64) {
        self.0.push(ms);
    }

    /// Nearest-rank percentiles; `None` without samples.
    fn percentiles(&self) -> Option<Percentiles> {
        if self.0.is_empty() {
            return None;
        }
        let mut sorted = self.0.clone();
        sorted.sort_unstable();
        let rank = |p: usize| {
            let index = (p * sorted.len()).div_ceil(100).max(1) - 1;
            sorted[index.min(sorted.len() - 1)]
        };
        Some(Percentiles {
            p50: rank(50),
            p95: rank(95),
            max: sorted[sorted.len() - 1],
        })
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: u64,
    pub p95: u64,
    pub max: u64,
}

#[derive(Debug, Clone, Default)]
struct SessionTally {
    agent: String,
    model: Option<String>,
    turns: u64,
    usage: Usage,
}

#[derive(Debug, Clone, Default)]
struct AgentTally {
    sessions: u64,
    requests: u64,
    latency: Samples,
    tool_calls: u64,
    tool_failures: u64,
}

#[derive(Debug, Clone, Default)]
struct ToolTally {
    calls: u64,
    failures: u64,
    latency: Samples,
}

/// The fold itself. `apply` every event of a mission, in order, then ask
/// for a `report`.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pricing: Prices,
    mission: Option<String>,
    outcome: Option<MissionOutcome>,
    sessions: BTreeMap<String, SessionTally>,
    agents: BTreeMap<String, AgentTally>,
    tools: BTreeMap<String, ToolTally>,
    model_latency: Samples,
    tool_latency: Samples,
    requests: u64,
    retries: u64,
    /// `(plugin, name)` → (sum, count) of `plugin_metric` values.
    plugin_metrics: BTreeMap<(String, String), (f64, u64)>,
}

impl Metrics {
    /// `pricing` turns tokens into dollars (`pricing` in orch.json).
    pub fn new(pricing: Prices) -> Self {
        Metrics {
            pricing,
            ..Metrics::default()
        }
    }

    fn agent_of(&self, session: &str) -> String {
        self.sessions
            .get(session)
            .map_or_else(|| "unknown".to_string(), |s| s.agent.clone())
    }

    pub fn apply(&mut self, envelope: &Envelope) {
        match &envelope.event {
            Event::MissionStarted { mission, .. } => {
                self.mission = Some(mission.clone());
                self.outcome = None;
            }
            Event::MissionFinished { outcome, .. } => self.outcome = Some(*outcome),
            Event::SessionStarted {
                session,
                agent,
                model,
                ..
            } => {
                let tally = self.sessions.entry(session.clone()).or_default();
                tally.agent = agent.clone();
                tally.model = Some(model.clone());
                self.agents.entry(agent.clone()).or_default().sessions += 1;
            }
            Event::ModelRequest { session, .. } => {
                self.requests += 1;
                let agent = self.agent_of(session);
                self.agents.entry(agent).or_default().requests += 1;
            }
            Event::ModelResponse {
                session,
                latency_ms,
                ..
            } => {
                self.model_latency.push(*latency_ms);
                let agent = self.agent_of(session);
                self.agents
                    .entry(agent)
                    .or_default()
                    .latency
                    .push(*latency_ms);
                if let Some(tally) = self.sessions.get_mut(session) {
                    tally.turns += 1;
                }
            }
            Event::ModelRetry { .. } => self.retries += 1,
            Event::Usage {
                session,
                agent,
                usage,
            } => {
                let tally = self.sessions.entry(session.clone()).or_default();
                if tally.agent.is_empty() {
                    tally.agent = agent.clone();
                }
                tally.usage.add(usage);
            }
            Event::ToolCallEnd {
                session,
                tool,
                ok,
                duration_ms,
                ..
            } => {
                self.tool_latency.push(*duration_ms);
                let agent = self.agent_of(session);
                let tally = self.tools.entry(tool.clone()).or_default();
                tally.calls += 1;
                tally.latency.push(*duration_ms);
                let by_agent = self.agents.entry(agent).or_default();
                by_agent.tool_calls += 1;
                if !ok {
                    tally.failures += 1;
                    by_agent.tool_failures += 1;
                }
            }
            Event::PluginMetric {
                plugin,
                name,
                value,
            } => {
                let entry = self
                    .plugin_metrics
                    .entry((plugin.clone(), name.clone()))
                    .or_default();
                entry.0 += value;
                entry.1 += 1;
            }
            Event::PlanUpdated { .. }
            | Event::PluginLog { .. }
            | Event::GateChecked { .. }
            | Event::TextDelta { .. }
            | Event::ToolCallBegin { .. }
            | Event::ApprovalRequested { .. }
            | Event::ApprovalResolved { .. }
            | Event::Warning { .. }
            | Event::ToolsChanged { .. }
            | Event::TaskQueued { .. }
            | Event::TaskStarted { .. }
            | Event::TaskFinished { .. }
            | Event::SessionFinished { .. }
            | Event::ContextCompacted { .. }
            | Event::MemoryEvicted { .. }
            | Event::BackgroundStarted { .. }
            | Event::BackgroundFinished { .. }
            | Event::TaskReported { .. }
            | Event::TaskLanded { .. } => {}
        }
    }

    /// The cost of one session's tokens, when its model has a price.
    fn session_cost(&self, tally: &SessionTally) -> Option<f64> {
        if tally.usage == Usage::default() {
            return Some(0.0);
        }
        let price = self.pricing.get(tally.model.as_deref()?)?;
        Some(tally.usage.cost(&price))
    }

    pub fn report(&self) -> MetricsReport {
        let mut usage = Usage::default();
        let mut cost = Some(0.0);
        let mut unpriced = Vec::new();
        let mut agent_usage: BTreeMap<&str, (Usage, Option<f64>)> = BTreeMap::new();
        let mut sessions = Vec::new();
        for (id, tally) in &self.sessions {
            let session_cost = self.session_cost(tally);
            usage.add(&tally.usage);
            cost = cost.zip(session_cost).map(|(a, b)| a + b);
            if session_cost.is_none() {
                let model = tally.model.clone().unwrap_or_else(|| "unknown".into());
                if !unpriced.contains(&model) {
                    unpriced.push(model);
                }
            }
            let entry = agent_usage
                .entry(tally.agent.as_str())
                .or_insert((Usage::default(), Some(0.0)));
            entry.0.add(&tally.usage);
            entry.1 = entry.1.zip(session_cost).map(|(a, b)| a + b);
            sessions.push(SessionMetrics {
                session: id.clone(),
                agent: tally.agent.clone(),
                model: tally.model.clone(),
                turns: tally.turns,
                usage: tally.usage,
                cost_usd: session_cost,
            });
        }
        let agents = self
            .agents
            .iter()
            .map(|(agent, tally)| {
                let (usage, cost_usd) = agent_usage
                    .get(agent.as_str())
                    .copied()
                    .unwrap_or((Usage::default(), Some(0.0)));
                AgentMetrics {
                    agent: agent.clone(),
                    sessions: tally.sessions,
                    requests: tally.requests,
                    latency_ms: tally.latency.percentiles(),
                    tool_calls: tally.tool_calls,
                    tool_failures: tally.tool_failures,
                    tool_success_rate: rate(tally.tool_calls, tally.tool_failures),
                    usage,
                    cost_usd,
                }
            })
            .collect();
        let tools = self
            .tools
            .iter()
            .map(|(tool, tally)| ToolMetrics {
                tool: tool.clone(),
                calls: tally.calls,
                failures: tally.failures,
                success_rate: rate(tally.calls, tally.failures),
                latency_ms: tally.latency.percentiles(),
            })
            .collect();
        let tool_calls: u64 = self.tools.values().map(|t| t.calls).sum();
        let tool_failures: u64 = self.tools.values().map(|t| t.failures).sum();
        MetricsReport {
            mission: self.mission.clone(),
            outcome: self.outcome,
            model: ModelMetrics {
                requests: self.requests,
                responses: self.model_latency.0.len() as u64,
                retries: self.retries,
                latency_ms: self.model_latency.percentiles(),
            },
            tool_calls: ToolTotals {
                calls: tool_calls,
                failures: tool_failures,
                success_rate: rate(tool_calls, tool_failures),
                latency_ms: self.tool_latency.percentiles(),
            },
            usage,
            cost_usd: cost,
            unpriced_models: unpriced,
            agents,
            tools,
            sessions,
            plugins: self
                .plugin_metrics
                .iter()
                .map(|((plugin, name), (sum, count))| PluginMetrics {
                    plugin: plugin.clone(),
                    name: name.clone(),
                    sum: *sum,
                    count: *count,
                })
                .collect(),
        }
    }
}

/// Share of calls that succeeded, 0..=1; `None` without calls.
fn rate(calls: u64, failures: u64) -> Option<f64> {
    (calls > 0).then(|| (calls - failures) as f64 / calls as f64)
}

/// What `orch metrics --json` prints and the live view shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsReport {
    pub mission: Option<String>,
    /// `None` while the mission runs.
    pub outcome: Option<MissionOutcome>,
    pub model: ModelMetrics,
    pub tool_calls: ToolTotals,
    /// Tokens of every session.
    pub usage: Usage,
    /// US dollars; `None` when a model that used tokens has no price.
    pub cost_usd: Option<f64>,
    /// Models that used tokens but have no `pricing` entry.
    pub unpriced_models: Vec<String>,
    pub agents: Vec<AgentMetrics>,
    pub tools: Vec<ToolMetrics>,
    pub sessions: Vec<SessionMetrics>,
    /// What plugins recorded with `record-metric`, by plugin and name.
    #[serde(default)]
    pub plugins: Vec<PluginMetrics>,
}

/// The values one plugin recorded under one name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginMetrics {
    /// The plugin's file name.
    pub plugin: String,
    pub name: String,
    pub sum: f64,
    /// How many values were recorded.
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMetrics {
    /// Model turns sent.
    pub requests: u64,
    /// Model turns that finished streaming.
    pub responses: u64,
    pub retries: u64,
    pub latency_ms: Option<Percentiles>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolTotals {
    pub calls: u64,
    pub failures: u64,
    pub success_rate: Option<f64>,
    pub latency_ms: Option<Percentiles>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentMetrics {
    pub agent: String,
    pub sessions: u64,
    pub requests: u64,
    /// Model latency of this agent's turns.
    pub latency_ms: Option<Percentiles>,
    pub tool_calls: u64,
    pub tool_failures: u64,
    pub tool_success_rate: Option<f64>,
    pub usage: Usage,
    pub cost_usd: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolMetrics {
    pub tool: String,
    pub calls: u64,
    pub failures: u64,
    pub success_rate: Option<f64>,
    pub latency_ms: Option<Percentiles>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionMetrics {
    pub session: String,
    pub agent: String,
    pub model: Option<String>,
    /// Model turns that finished.
    pub turns: u64,
    pub usage: Usage,
    pub cost_usd: Option<f64>,
}

/// `12345` as `12.3k`, `1234567` as `1.23M`.
pub fn tokens(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1}k", n as f64 / 1_000.0),
        _ => format!("{:.2}M", n as f64 / 1_000_000.0),
    }
}

/// A cost for people: `$0.0123`, or `no price` when unknown.
pub fn dollars(cost: Option<f64>) -> String {
    cost.map_or_else(|| "no price".to_string(), |c| format!("${c:.4}"))
}

/// Tokens for people, said the same way in every view:
/// `120400 in (92% cached, 3100 written), 5200 out`. `count` writes each
/// number in the view's style (exact, or short with [`tokens`] where room
/// is scarce). Without prompt tokens there is no cache share to show.
pub fn usage_text(usage: &Usage, count: impl Fn(u64) -> String) -> String {
    let mut text = format!("{} in", count(usage.input));
    if let Some(ratio) = usage.cache_hit_ratio() {
        text.push_str(&format!(" ({} cached", cached_percent(ratio)));
        if usage.cache_write > 0 {
            text.push_str(&format!(", {} written", count(usage.cache_write)));
        }
        text.push(')');
    }
    text.push_str(&format!(", {} out", count(usage.output)));
    text
}

/// A cache hit ratio as a whole percent (`92%`). A partial share never
/// reads `0%` or `100%`: those mean none and all.
fn cached_percent(ratio: f64) -> String {
    let percent = (ratio * 100.0).round();
    if ratio > 0.0 && percent < 1.0 {
        "<1%".to_string()
    } else if ratio < 1.0 && percent > 99.0 {
        ">99%".to_string()
    } else {
        format!("{percent:.0}%")
    }
}

/// A cache hit ratio in a table cell: `-` without prompt tokens.
fn cached_cell(usage: &Usage) -> String {
    usage
        .cache_hit_ratio()
        .map_or_else(|| "-".to_string(), cached_percent)
}

fn percent(rate: Option<f64>) -> String {
    rate.map_or_else(|| "-".to_string(), |r| format!("{:.1}%", r * 100.0))
}

fn latency(p: Option<Percentiles>) -> (String, String, String) {
    match p {
        Some(p) => (p.p50.to_string(), p.p95.to_string(), p.max.to_string()),
        None => ("-".into(), "-".into(), "-".into()),
    }
}

/// Columns padded to their widest cell; the first `text` columns are
/// left-aligned, the others (numbers) right-aligned.
fn table(header: &[&str], text: usize, rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            let pad = width - cell.chars().count();
            if i > 0 {
                out.push_str("  ");
            }
            if i < text {
                out.push_str(cell);
                out.push_str(&" ".repeat(pad));
            } else {
                out.push_str(&" ".repeat(pad));
                out.push_str(cell);
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// The report as text: totals, then one table per agent, tool and session.
pub fn render_text(report: &MetricsReport) -> String {
    let mut out = String::new();
    let status = match report.outcome {
        None => "running",
        Some(MissionOutcome::Complete) => "complete",
        Some(MissionOutcome::Stopped) => "stopped",
        Some(MissionOutcome::Cancelled) => "cancelled",
    };
    match &report.mission {
        Some(mission) => out.push_str(&format!("mission {mission}: {status}\n")),
        None => out.push_str("no mission in these events\n"),
    }
    let model = &report.model;
    let (p50, p95, max) = latency(model.latency_ms);
    out.push_str(&format!(
        "model: {} requests, {} responses, {} retries; latency p50 {p50} ms, p95 {p95} ms, max {max} ms\n",
        model.requests, model.responses, model.retries
    ));
    let tools = &report.tool_calls;
    let (p50, p95, max) = latency(tools.latency_ms);
    out.push_str(&format!(
        "tools: {} calls, {} failed, {} ok; latency p50 {p50} ms, p95 {p95} ms, max {max} ms\n",
        tools.calls,
        tools.failures,
        percent(tools.success_rate)
    ));
    let cost = match (&report.cost_usd, report.unpriced_models.is_empty()) {
        (Some(cost), _) => format!("${cost:.4}"),
        (None, false) => format!(
            "unknown (no price for {}; add \"pricing\" to orch.json)",
            report.unpriced_models.join(", ")
        ),
        (None, true) => "unknown".into(),
    };
    out.push_str(&format!(
        "tokens: {}; cost {cost}\n",
        usage_text(&report.usage, |n| n.to_string())
    ));
    if !report.agents.is_empty() {
        out.push('\n');
        let rows: Vec<Vec<String>> = report
            .agents
            .iter()
            .map(|a| {
                let (p50, p95, _) = latency(a.latency_ms);
                vec![
                    a.agent.clone(),
                    a.sessions.to_string(),
                    a.requests.to_string(),
                    p50,
                    p95,
                    a.tool_calls.to_string(),
                    percent(a.tool_success_rate),
                    a.usage.input.to_string(),
                    cached_cell(&a.usage),
                    a.usage.output.to_string(),
                    dollars(a.cost_usd),
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "agent", "sessions", "requests", "p50 ms", "p95 ms", "tools", "tools ok", "in",
                "cached", "out", "cost",
            ],
            1,
            &rows,
        ));
    }
    if !report.tools.is_empty() {
        out.push('\n');
        let rows: Vec<Vec<String>> = report
            .tools
            .iter()
            .map(|t| {
                let (p50, p95, max) = latency(t.latency_ms);
                vec![
                    t.tool.clone(),
                    t.calls.to_string(),
                    t.failures.to_string(),
                    percent(t.success_rate),
                    p50,
                    p95,
                    max,
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "tool", "calls", "failed", "ok", "p50 ms", "p95 ms", "max ms",
            ],
            1,
            &rows,
        ));
    }
    if !report.sessions.is_empty() {
        out.push('\n');
        let rows: Vec<Vec<String>> = report
            .sessions
            .iter()
            .map(|s| {
                vec![
                    s.session.clone(),
                    s.agent.clone(),
                    s.model.clone().unwrap_or_else(|| "-".into()),
                    s.turns.to_string(),
                    s.usage.input.to_string(),
                    cached_cell(&s.usage),
                    s.usage.output.to_string(),
                    dollars(s.cost_usd),
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "session", "agent", "model", "turns", "in", "cached", "out", "cost",
            ],
            3,
            &rows,
        ));
    }
    if !report.plugins.is_empty() {
        out.push('\n');
        let rows: Vec<Vec<String>> = report
            .plugins
            .iter()
            .map(|p| {
                vec![
                    p.plugin.clone(),
                    p.name.clone(),
                    p.count.to_string(),
                    format!("{}", (p.sum * 1000.0).round() / 1000.0),
                ]
            })
            .collect();
        out.push_str(&table(&["plugin", "metric", "values", "sum"], 2, &rows));
    }
    out
}

/// The fold as a bus sink, shared with the `show_metrics` tool.
pub struct MetricsSink {
    metrics: Mutex<Metrics>,
}

impl MetricsSink {
    pub fn new(pricing: Prices) -> Self {
        MetricsSink {
            metrics: Mutex::new(Metrics::new(pricing)),
        }
    }

    pub fn report(&self) -> MetricsReport {
        self.metrics.lock().expect("metrics lock").report()
    }
}

impl EventSink for MetricsSink {
    fn write(&self, envelope: &Envelope) {
        self.metrics.lock().expect("metrics lock").apply(envelope);
    }
}

impl MetricsSource for MetricsSink {
    fn summary(&self) -> String {
        render_text(&self.report())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::FinishReason;

    fn envelope(seq: u64, event: Event) -> Envelope {
        Envelope {
            seq,
            ts_ms: 1_000 + seq,
            event,
        }
    }

    fn usage(input: u64, output: u64) -> Usage {
        Usage {
            input,
            output,
            cached_input: 0,
            cache_write: 0,
            reasoning: 0,
        }
    }

    fn fold(events: Vec<Event>, pricing: Prices) -> MetricsReport {
        let mut metrics = Metrics::new(pricing);
        for (i, event) in events.into_iter().enumerate() {
            metrics.apply(&envelope(i as u64 + 1, event));
        }
        metrics.report()
    }

    fn started(session: &str, agent: &str, model: &str) -> Event {
        Event::SessionStarted {
            session: session.into(),
            agent: agent.into(),
            provider: "scripted".into(),
            model: model.into(),
        }
    }

    fn turn(session: &str, latency_ms: u64) -> [Event; 2] {
        [
            Event::ModelRequest {
                session: session.into(),
                turn: 1,
                messages: 1,
                tools: 0,
            },
            Event::ModelResponse {
                session: session.into(),
                turn: 1,
                finish: Some(FinishReason::Stop),
                tool_calls: 0,
                latency_ms,
            },
        ]
    }

    fn tool_end(session: &str, tool: &str, ok: bool, duration_ms: u64) -> Event {
        Event::ToolCallEnd {
            session: session.into(),
            call_id: "c".into(),
            tool: tool.into(),
            ok,
            duration_ms,
            preview: String::new(),
        }
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let p = |p50, p95, max| Some(Percentiles { p50, p95, max });
        let twenty: Vec<u64> = (1..20).map(|i| i * 10).chain([1000]).collect();
        let cases = [
            (vec![], None),
            (vec![7], p(7, 7, 7)),
            (vec![1, 2, 3, 4], p(2, 4, 4)),
            (twenty, p(100, 190, 1000)),
        ];
        for (samples, expected) in cases {
            assert_eq!(
                Samples(samples.clone()).percentiles(),
                expected,
                "{samples:?}"
            );
        }
    }

    #[test]
    fn latency_success_tokens_and_cost_come_from_the_events() {
        let mut events = vec![
            Event::MissionStarted {
                mission: "m-1".into(),
                pid: 1,
                sandbox: String::new(),
                goal: "g".into(),
                root: "/p".into(),
                max_iterations: 5,
                commander_session: "c1".into(),
                resumed: false,
                budget_tokens: None,
                budget_usd: None,
            },
            started("c1", "Commander", "big"),
            started("w1", "Worker", "small"),
        ];
        events.extend(turn("c1", 100));
        events.extend(turn("c1", 300));
        events.extend(turn("w1", 50));
        events.push(Event::ModelRetry {
            session: "w1".into(),
            attempt: 1,
            delay_ms: 10,
            reason: "429".into(),
            discarded_bytes: 0,
        });
        events.push(tool_end("w1", "write", true, 4));
        events.push(tool_end("w1", "bash", false, 900));
        events.push(tool_end("w1", "bash", true, 100));
        events.push(Event::Usage {
            session: "c1".into(),
            agent: "Commander".into(),
            usage: usage(1_000_000, 0),
        });
        events.push(Event::Usage {
            session: "w1".into(),
            agent: "Worker".into(),
            usage: usage(0, 1_000_000),
        });
        let pricing = BTreeMap::from([
            (
                "big".to_string(),
                crate::config::Price {
                    input: 3.0,
                    output: 15.0,
                    cached_input: None,
                    cache_write: None,
                },
            ),
            (
                "small".to_string(),
                crate::config::Price {
                    input: 1.0,
                    output: 2.0,
                    cached_input: None,
                    cache_write: None,
                },
            ),
        ]);
        let report = fold(events.clone(), Prices::new(pricing, false));
        assert_eq!(report.mission.as_deref(), Some("m-1"));
        assert_eq!(report.outcome, None);
        assert_eq!(report.model.requests, 3);
        assert_eq!(report.model.retries, 1);
        assert_eq!(
            report.model.latency_ms,
            Some(Percentiles {
                p50: 100,
                p95: 300,
                max: 300
            })
        );
        assert_eq!(report.tool_calls.calls, 3);
        assert_eq!(report.tool_calls.failures, 1);
        let commander = &report.agents[0];
        assert_eq!(commander.agent, "Commander");
        assert_eq!(commander.requests, 2);
        assert_eq!(commander.latency_ms.map(|p| p.p50), Some(100));
        assert_eq!(commander.cost_usd, Some(3.0));
        let worker = &report.agents[1];
        assert_eq!((worker.tool_calls, worker.tool_failures), (3, 1));
        assert_eq!(worker.cost_usd, Some(2.0));
        let bash = report.tools.iter().find(|t| t.tool == "bash").unwrap();
        assert_eq!(bash.success_rate, Some(0.5));
        assert_eq!(bash.latency_ms.map(|p| p.max), Some(900));
        assert_eq!(report.usage, usage(1_000_000, 1_000_000));
        assert_eq!(report.cost_usd, Some(5.0));
        assert_eq!(report.sessions.len(), 2);
        assert_eq!(report.sessions[1].turns, 1);

        // Without a price for a model that used tokens, the total is unknown
        // and the model is named.
        let report = fold(events, Prices::default());
        assert_eq!(report.cost_usd, None);
        assert_eq!(report.unpriced_models, ["big", "small"]);
        let text = render_text(&report);
        assert!(text.contains("no price for big, small"), "{text}");
        assert!(text.contains("mission m-1: running"), "{text}");
    }

    #[test]
    fn plugin_metrics_are_summed_per_plugin_and_name() {
        let metric = |plugin: &str, name: &str, value: f64| Event::PluginMetric {
            plugin: plugin.into(),
            name: name.into(),
            value,
        };
        let report = fold(
            vec![
                metric("metrics.wasm", "tool.bash.ms", 12.5),
                metric("metrics.wasm", "tool.bash.ms", 7.5),
                metric("metrics.wasm", "tool.bash.calls", 1.0),
                metric("gate.wasm", "shortened", 3.0),
            ],
            Prices::default(),
        );
        let sums: Vec<(&str, &str, f64, u64)> = report
            .plugins
            .iter()
            .map(|p| (p.plugin.as_str(), p.name.as_str(), p.sum, p.count))
            .collect();
        assert_eq!(
            sums,
            [
                ("gate.wasm", "shortened", 3.0, 1),
                ("metrics.wasm", "tool.bash.calls", 1.0, 1),
                ("metrics.wasm", "tool.bash.ms", 20.0, 2),
            ]
        );
        let text = render_text(&report);
        assert!(
            text.contains("plugin        metric           values  sum\n"),
            "{text}"
        );
        assert!(
            text.contains("metrics.wasm  tool.bash.ms          2   20\n"),
            "{text}"
        );
    }

    #[test]
    fn the_text_report_is_a_table_per_agent_tool_and_session() {
        let mut events = vec![started("w1", "Worker", "small")];
        events.extend(turn("w1", 20));
        events.push(tool_end("w1", "read", true, 2));
        events.push(Event::MissionFinished {
            mission: "m-2".into(),
            outcome: MissionOutcome::Complete,
            reason: "done".into(),
            iterations: 1,
            usage: Usage::default(),
            cost_usd: None,
        });
        let text = render_text(&fold(events, Prices::default()));
        let expected = "\
no mission in these events
model: 1 requests, 1 responses, 0 retries; latency p50 20 ms, p95 20 ms, max 20 ms
tools: 1 calls, 0 failed, 100.0% ok; latency p50 2 ms, p95 2 ms, max 2 ms
tokens: 0 in, 0 out; cost $0.0000

agent   sessions  requests  p50 ms  p95 ms  tools  tools ok  in  cached  out     cost
Worker         1         1      20      20      1    100.0%   0       -    0  $0.0000

tool  calls  failed      ok  p50 ms  p95 ms  max ms
read      1       0  100.0%       2       2       2

session  agent   model  turns  in  cached  out     cost
w1       Worker  small      1   0       -    0  $0.0000
";
        assert_eq!(text, expected);
    }

    fn cached(input: u64, cached_input: u64, cache_write: u64, output: u64) -> Usage {
        Usage {
            input,
            output,
            cached_input,
            cache_write,
            reasoning: 0,
        }
    }

    #[test]
    fn the_cache_hit_ratio_is_the_share_of_prompt_tokens_read_from_the_cache() {
        let cases = [
            (cached(0, 0, 0, 0), None),
            // Nothing to divide by, whatever else was said.
            (cached(0, 5, 5, 10), None),
            (cached(100, 0, 100, 0), Some(0.0)),
            (cached(200, 50, 0, 0), Some(0.25)),
            (cached(100, 100, 0, 0), Some(1.0)),
            // More cached than sent counts as all of it, as `cost` does.
            (cached(100, 150, 0, 0), Some(1.0)),
        ];
        for (usage, expected) in cases {
            assert_eq!(usage.cache_hit_ratio(), expected, "{usage:?}");
        }
    }

    #[test]
    fn usage_reads_the_same_way_in_every_view() {
        let exact = |n: u64| n.to_string();
        let cases = [
            (cached(0, 0, 0, 0), "0 in, 0 out", "0 in, 0 out"),
            (
                cached(1000, 0, 0, 10),
                "1000 in (0% cached), 10 out",
                "1.0k in (0% cached), 10 out",
            ),
            (
                cached(120_400, 110_768, 3_100, 5_200),
                "120400 in (92% cached, 3100 written), 5200 out",
                "120.4k in (92% cached, 3.1k written), 5.2k out",
            ),
            (
                cached(1000, 0, 1000, 7),
                "1000 in (0% cached, 1000 written), 7 out",
                "1.0k in (0% cached, 1.0k written), 7 out",
            ),
            // A sliver of a hit is not "0%", nearly all is not "100%".
            (
                cached(1000, 4, 0, 0),
                "1000 in (<1% cached), 0 out",
                "1.0k in (<1% cached), 0 out",
            ),
            (
                cached(1000, 999, 0, 0),
                "1000 in (>99% cached), 0 out",
                "1.0k in (>99% cached), 0 out",
            ),
            (
                cached(10, 20, 0, 1),
                "10 in (100% cached), 1 out",
                "10 in (100% cached), 1 out",
            ),
        ];
        for (usage, long, short) in cases {
            assert_eq!(usage_text(&usage, exact), long, "{usage:?}");
            assert_eq!(usage_text(&usage, tokens), short, "{usage:?}");
        }
    }

    #[test]
    fn the_report_shows_cache_hits_and_what_they_cost_per_agent_and_session() {
        let mut events = vec![
            started("c1", "Commander", "cached"),
            started("w1", "Worker", "cached"),
            started("w2", "Worker", "cached"),
        ];
        for (session, agent, usage) in [
            ("c1", "Commander", cached(1_000_000, 0, 1_000_000, 0)),
            ("c1", "Commander", cached(1_000_000, 900_000, 0, 100_000)),
            ("w1", "Worker", cached(500_000, 250_000, 0, 0)),
            ("w2", "Worker", cached(500_000, 0, 0, 0)),
        ] {
            events.push(Event::Usage {
                session: session.into(),
                agent: agent.into(),
                usage,
            });
        }
        let pricing = BTreeMap::from([(
            "cached".to_string(),
            crate::config::Price {
                input: 2.0,
                output: 10.0,
                cached_input: Some(0.5),
                cache_write: Some(2.5),
            },
        )]);
        let report = fold(events, Prices::new(pricing, false));
        // Commander: 1M written at 2.5, 0.9M read at 0.5, 0.1M plain at 2,
        // 0.1M out at 10. Workers: 0.25M read at 0.5, 0.75M plain at 2.
        let about = |cost: Option<f64>, expected: f64| {
            assert!((cost.unwrap() - expected).abs() < 1e-9, "{cost:?}");
        };
        let commander = &report.agents[0];
        assert_eq!(commander.usage.cache_hit_ratio(), Some(0.45));
        about(commander.cost_usd, 2.5 + 0.45 + 0.2 + 1.0);
        let worker = &report.agents[1];
        assert_eq!(worker.usage.cache_hit_ratio(), Some(0.25));
        about(worker.cost_usd, 0.125 + 1.5);
        about(report.cost_usd, 4.15 + 1.625);
        let text = render_text(&report);
        let expected = "\
tokens: 3000000 in (38% cached, 1000000 written), 100000 out; cost $5.7750

agent      sessions  requests  p50 ms  p95 ms  tools  tools ok       in  cached     out     cost
Commander         1         0       -       -      0         -  2000000     45%  100000  $4.1500
Worker            2         0       -       -      0         -  1000000     25%       0  $1.6250

session  agent      model   turns       in  cached     out     cost
c1       Commander  cached      0  2000000     45%  100000  $4.1500
w1       Worker     cached      0   500000     50%       0  $0.6250
w2       Worker     cached      0   500000      0%       0  $1.0000
";
        assert!(text.ends_with(expected), "{text}");
    }

    #[test]
    fn token_counts_read_short() {
        assert_eq!(tokens(999), "999");
        assert_eq!(tokens(12_345), "12.3k");
        assert_eq!(tokens(1_234_567), "1.23M");
    }
}
