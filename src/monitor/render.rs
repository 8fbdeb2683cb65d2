//! Drawing the live view: a pure function from the view model (and the
//! screen's own state: scroll position, an open confirmation) to a ratatui
//! `Frame`, so every frame can be tested on a `TestBackend`.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Row, Table};

use super::metrics::{dollars, tokens, usage_text};
use super::view::{Activity, Level, View, outcome_word};
use crate::events::{MissionOutcome, TaskStatus};
use crate::todo::{Plan, Status};

/// The screen's own state: what the person did, not what the mission did.
#[derive(Debug, Clone, Default)]
pub struct Ui {
    /// Log lines scrolled back from the newest (0 follows the log).
    pub scroll: usize,
    /// `c` was pressed: ask before cancelling.
    pub confirm_cancel: bool,
    /// Attached with `orch monitor`: no cancel key.
    pub read_only: bool,
    /// Colours, unless `NO_COLOR` is set.
    pub color: bool,
    /// A short message in the footer ("cancelling…").
    pub notice: Option<String>,
}

impl Ui {
    fn fg(&self, color: Color) -> Style {
        if self.color {
            Style::new().fg(color)
        } else {
            Style::new()
        }
    }

    fn level(&self, level: Level) -> Style {
        match level {
            Level::Info => Style::new(),
            Level::Good => self.fg(Color::Green),
            Level::Warn => self.fg(Color::Yellow),
            Level::Bad => self.fg(Color::Red).add_modifier(Modifier::BOLD),
        }
    }
}

/// Draw `view` as of `now_ms` (wall-clock milliseconds, for the elapsed time).
pub fn render(frame: &mut Frame, view: &View, ui: &Ui, now_ms: u64) {
    let area = frame.area();
    let log_height = (area.height / 3).clamp(4, 14);
    let [header, middle, metrics, log, footer] = Layout::vertical([
        Constraint::Length(5),
        Constraint::Min(5),
        Constraint::Length(3),
        Constraint::Length(log_height),
        Constraint::Length(1),
    ])
    .areas(area);
    let [plan, agents] =
        Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(middle);
    render_header(frame, header, view, ui, now_ms);
    render_plan(frame, plan, view, ui);
    render_agents(frame, agents, view, ui);
    render_metrics(frame, metrics, view);
    render_log(frame, log, view, ui);
    render_footer(frame, footer, view, ui);
    if ui.confirm_cancel {
        render_confirm(frame, area, view);
    }
}

/// The cost so far, or why it is unknown.
fn cost(usd: Option<f64>) -> String {
    match usd {
        Some(_) => format!("cost {}", dollars(usd)),
        None => "cost unknown (no pricing)".to_string(),
    }
}

/// `65_000` as `1m05s`.
pub fn duration(ms: u64) -> String {
    let secs = ms / 1000;
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60),
    }
}

fn render_header(frame: &mut Frame, area: Rect, view: &View, ui: &Ui, now_ms: u64) {
    let mut title = match &view.mission {
        Some(id) => format!(" orch · mission {id} "),
        None => " orch · waiting for the mission to start ".to_string(),
    };
    if view.resumed {
        title.push_str("(resumed) ");
    }
    if ui.read_only {
        title.push_str("· read-only ");
    }
    let (state, state_style) = match &view.finished {
        None => ("running".to_string(), ui.fg(Color::Cyan)),
        Some((outcome, _, _)) => (
            outcome_word(*outcome).to_string(),
            match outcome {
                MissionOutcome::Complete => ui.fg(Color::Green),
                MissionOutcome::Stopped => ui.fg(Color::Red),
                MissionOutcome::Cancelled => ui.fg(Color::Yellow),
            }
            .add_modifier(Modifier::BOLD),
        ),
    };
    let metrics = view.metrics();
    if view.mission.is_none() {
        let waiting = Line::styled(
            "waiting for the mission's first event",
            Style::new().add_modifier(Modifier::DIM),
        );
        frame.render_widget(
            Paragraph::new(vec![Line::from(""), waiting]).block(Block::bordered().title(title)),
            area,
        );
        return;
    }
    let mut status = vec![
        Span::raw(format!(
            "iteration {}/{} · {} · ",
            view.iteration,
            view.max_iterations,
            duration(view.elapsed_ms(now_ms))
        )),
        Span::styled(state, state_style),
    ];
    if let Some((_, reason, _)) = &view.finished {
        status.push(Span::raw(format!(": {reason}")));
    } else if let Some(gate) = &view.gate {
        if gate.passed {
            status.push(Span::styled(
                format!(" · gate passed at {}", gate.iteration),
                ui.fg(Color::Green),
            ));
        } else {
            status.push(Span::styled(
                format!(
                    " · gate failed at {}: {}",
                    gate.iteration,
                    gate.summary.join("; ")
                ),
                ui.fg(Color::Red),
            ));
        }
    }
    let mut spent = format!(
        "tokens {} · {}",
        usage_text(&metrics.usage, tokens),
        cost(metrics.cost_usd)
    );
    if let Some(limit) = view.budget_tokens {
        spent.push_str(&format!(
            " · token budget {} of {}",
            tokens(metrics.usage.total()),
            tokens(limit)
        ));
    }
    if let Some(limit) = view.budget_usd {
        spent.push_str(&format!(
            " · budget {} of {}",
            dollars(metrics.cost_usd),
            dollars(Some(limit))
        ));
    }
    let mut budget = vec![Span::raw(spent)];
    // Where the mission's commands run: a sandbox that is off stands out.
    match view.sandbox.as_str() {
        "" => {}
        "off" => budget.push(Span::styled(" · sandbox off", ui.fg(Color::Yellow))),
        mode => budget.push(Span::raw(format!(" · sandbox {mode}"))),
    }
    let budget = Line::from(budget);
    let goal = Line::from(vec![
        Span::styled("goal ", Style::new().add_modifier(Modifier::DIM)),
        Span::styled(
            view.goal.lines().next().unwrap_or_default().to_string(),
            Style::new().add_modifier(Modifier::BOLD),
        ),
    ]);
    let lines = vec![goal, Line::from(status), budget];
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(title)),
        area,
    );
}

/// The bar and the plan's lines: headings as group titles, items indented
/// by depth with their marker.
fn plan_lines(plan: &Plan, ui: &Ui) -> (Vec<Line<'static>>, Option<usize>) {
    let mut entries: Vec<(usize, Line<'static>, bool)> = Vec::new();
    for group in plan.groups() {
        if group.level < 2 {
            continue;
        }
        let indent = "  ".repeat(group.level - 2);
        let text = match &group.id {
            Some(id) => format!("{indent}{id}: {}", group.title),
            None => format!("{indent}{}", group.title),
        };
        entries.push((
            group.line,
            Line::styled(text, Style::new().add_modifier(Modifier::BOLD)),
            false,
        ));
    }
    for item in plan.items() {
        let base = item
            .group
            .map(|g| plan.groups()[g].level.saturating_sub(1))
            .unwrap_or(0);
        let indent = "  ".repeat(base + item.depth);
        let (marker, style) = match item.status {
            Status::Done => ("[x]", ui.fg(Color::Green)),
            Status::InProgress => ("[/]", ui.fg(Color::Yellow).add_modifier(Modifier::BOLD)),
            Status::Failed => ("[-]", ui.fg(Color::Red)),
            Status::Pending => ("[ ]", Style::new()),
        };
        let text = match &item.id {
            Some(id) => format!(" {id}: {}", item.text),
            None => format!(" {}", item.text),
        };
        let line = Line::from(vec![
            Span::raw(indent),
            Span::styled(marker, style),
            Span::raw(text),
        ]);
        entries.push((item.line, line, item.status != Status::Done));
    }
    entries.sort_by_key(|(line, _, _)| *line);
    let first_open = entries.iter().position(|(_, _, open)| *open);
    (
        entries.into_iter().map(|(_, line, _)| line).collect(),
        first_open,
    )
}

fn render_plan(frame: &mut Frame, area: Rect, view: &View, ui: &Ui) {
    let progress = view.progress();
    let title = match progress {
        Some((done, total)) => format!(" Plan · {done}/{total} done "),
        None => " Plan ".to_string(),
    };
    let block = Block::bordered().title(title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if inner.height == 0 || inner.width == 0 {
        return;
    }
    let [bar, rest] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(inner);
    let Some((done, total)) = progress else {
        frame.render_widget(
            Paragraph::new("no plan yet").style(Style::new().add_modifier(Modifier::DIM)),
            inner,
        );
        return;
    };
    let percent = done * 100 / total.max(1);
    let label = format!(" {percent:>3}%");
    let width = (bar.width as usize).saturating_sub(label.len());
    let filled = width * done / total.max(1);
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled("█".repeat(filled), ui.fg(Color::Green)),
            Span::styled(
                "░".repeat(width - filled),
                Style::new().add_modifier(Modifier::DIM),
            ),
            Span::raw(label),
        ])),
        bar,
    );
    let Some(plan) = &view.plan else {
        return;
    };
    let (lines, first_open) = plan_lines(plan, ui);
    let height = rest.height as usize;
    // Keep the first open item in sight, with a line of context above it.
    let start = first_open
        .map_or(0, |open| open.saturating_sub(1))
        .min(lines.len().saturating_sub(height));
    let shown: Vec<Line> = lines.into_iter().skip(start).take(height).collect();
    frame.render_widget(Paragraph::new(shown), rest);
}

fn render_agents(frame: &mut Frame, area: Rect, view: &View, ui: &Ui) {
    let block = Block::bordered().title(format!(" Agents · {} sessions ", view.sessions.len()));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if inner.height == 0 {
        return;
    }
    let [table_area, stats] =
        Layout::vertical([Constraint::Min(0), Constraint::Length(1)]).areas(inner);
    let task_text = |task: &Option<String>| {
        task.as_ref()
            .and_then(|id| view.tasks.iter().find(|t| &t.id == id))
            .map_or_else(String::new, |t| match (&t.merge, t.worktree) {
                (Some(merge), _) => format!("{} · {merge}", t.description),
                (None, true) => format!("{} · worktree", t.description),
                (None, false) => t.description.clone(),
            })
    };
    let mut active = Vec::new();
    let mut ended = Vec::new();
    for session in &view.sessions {
        let style = match &session.activity {
            Activity::Thinking => ui.fg(Color::Cyan),
            Activity::Running(_) => ui.fg(Color::Yellow),
            Activity::Approval(_) => ui.fg(Color::Magenta).add_modifier(Modifier::BOLD),
            Activity::Idle => Style::new(),
            Activity::Done => ui.fg(Color::Green),
            Activity::Failed(_) => ui.fg(Color::Red),
            Activity::Cancelled => Style::new().add_modifier(Modifier::DIM),
        };
        let row = Row::new(vec![
            Span::raw(session.agent.clone()),
            Span::styled(session.activity.label(), style),
            Span::raw(task_text(&session.task)),
            Span::raw(tokens(session.usage.total())),
        ]);
        match session.activity {
            Activity::Done | Activity::Failed(_) | Activity::Cancelled => ended.push(row),
            Activity::Idle | Activity::Thinking | Activity::Running(_) | Activity::Approval(_) => {
                active.push(row)
            }
        }
    }
    let queued = view
        .tasks
        .iter()
        .filter(|t| t.status == TaskStatus::Queued)
        .map(|t| {
            Row::new(vec![
                Span::raw(t.agent.clone()),
                Span::styled("queued", Style::new().add_modifier(Modifier::DIM)),
                Span::raw(t.description.clone()),
                Span::raw(String::new()),
            ])
        });
    let rows: Vec<Row> = active.into_iter().chain(queued).chain(ended).collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(10),
            Constraint::Length(20),
            Constraint::Min(6),
            Constraint::Length(6),
        ],
    )
    .header(
        Row::new(vec!["agent", "state", "task", "tokens"])
            .style(Style::new().add_modifier(Modifier::DIM)),
    );
    frame.render_widget(table, table_area);
    let pool = view.pool;
    frame.render_widget(
        Paragraph::new(format!(
            "queue {} · pool {} created, {} reused, {} idle",
            view.queued(),
            pool.creations,
            pool.reuse_hits,
            pool.idle
        ))
        .style(Style::new().add_modifier(Modifier::DIM)),
        stats,
    );
}

fn render_metrics(frame: &mut Frame, area: Rect, view: &View) {
    let report = view.metrics();
    let model = match report.model.latency_ms {
        Some(p) => format!(
            "model p50 {} ms · p95 {} ms ({} turns, {} retries)",
            p.p50, p.p95, report.model.responses, report.model.retries
        ),
        None => "model: no turns yet".to_string(),
    };
    let tools = &report.tool_calls;
    let tools = match tools.success_rate {
        Some(rate) => format!(
            "tools {}/{} ok ({:.1}%)",
            tools.calls - tools.failures,
            tools.calls,
            rate * 100.0
        ),
        None => "tools: no calls yet".to_string(),
    };
    let text = format!(
        "{model} │ {tools} │ tokens {} │ {}",
        tokens(report.usage.total()),
        cost(report.cost_usd)
    );
    frame.render_widget(
        Paragraph::new(text).block(Block::bordered().title(" Metrics ")),
        area,
    );
}

fn render_log(frame: &mut Frame, area: Rect, view: &View, ui: &Ui) {
    let height = area.height.saturating_sub(2) as usize;
    let total = view.log.len();
    let scroll = ui.scroll.min(total.saturating_sub(height));
    let title = if scroll > 0 {
        format!(" Log · {scroll} newer below ")
    } else {
        " Log ".to_string()
    };
    let end = total - scroll;
    let start = end.saturating_sub(height);
    let start_ms = view.started_ms.unwrap_or(0);
    let lines: Vec<Line> = view
        .log
        .range(start..end)
        .map(|line| {
            Line::from(vec![
                Span::styled(
                    format!("{:>6} ", duration(line.at_ms.saturating_sub(start_ms))),
                    Style::new().add_modifier(Modifier::DIM),
                ),
                Span::styled(line.text.clone(), ui.level(line.level)),
            ])
        })
        .collect();
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(title)),
        area,
    );
}

fn render_footer(frame: &mut Frame, area: Rect, view: &View, ui: &Ui) {
    let keys = if ui.read_only {
        " q quit · ↑↓ PgUp PgDn scroll the log · read-only: `orch cancel` stops the mission"
    } else if view.finished.is_some() {
        " the mission has ended"
    } else {
        " c cancel · q leave the view (the mission goes on) · ↑↓ PgUp PgDn scroll the log"
    };
    let mut spans = vec![Span::styled(keys, Style::new().add_modifier(Modifier::DIM))];
    if let Some(notice) = &ui.notice {
        spans.push(Span::styled(
            format!("  {notice}"),
            ui.fg(Color::Yellow).add_modifier(Modifier::BOLD),
        ));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn render_confirm(frame: &mut Frame, area: Rect, view: &View) {
    let width = area.width.min(52);
    let height = area.height.min(5);
    let popup = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    let mission = view.mission.as_deref().unwrap_or("the mission");
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(vec![
            Line::from(format!("Cancel {mission}?")),
            Line::from(""),
            Line::from("y: cancel it · any other key: keep it running"),
        ])
        .block(Block::bordered().title(" cancel ")),
        popup,
    );
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::*;
    use crate::config::Price;
    use crate::events::PoolStats;
    use crate::events::{Envelope, Event, PlanCounts, SessionOutcome, VerifyResult};
    use crate::provider::{FinishReason, Usage};

    const START: u64 = 1_700_000_000_000;

    /// A view fed `events`, one second apart from `START`.
    fn view(events: Vec<Event>) -> View {
        let pricing = BTreeMap::from([(
            "small".to_string(),
            Price {
                input: 1.0,
                output: 4.0,
                cached_input: None,
                cache_write: None,
            },
        )]);
        let mut view = View::new(None, crate::models::Prices::new(pricing, false));
        for (i, event) in events.into_iter().enumerate() {
            view.apply(&Envelope {
                seq: i as u64 + 1,
                ts_ms: START + i as u64 * 1000,
                event,
            });
        }
        view
    }

    fn draw(view: &View, ui: &Ui, width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal
            .draw(|frame| render(frame, view, ui, START + 65_000))
            .unwrap();
        terminal.backend().to_string()
    }

    fn mission_started() -> Event {
        mission_with_budgets(None, None)
    }

    fn mission_with_budgets(budget_tokens: Option<u64>, budget_usd: Option<f64>) -> Event {
        Event::MissionStarted {
            mission: "m-test".into(),
            pid: 1,
            sandbox: "workspace-write".into(),
            goal: "Add JWT authentication".into(),
            root: "/nonexistent/project".into(),
            max_iterations: 25,
            commander_session: "commander-1".into(),
            resumed: false,
            budget_tokens,
            budget_usd,
        }
    }

    fn session(id: &str, agent: &str) -> Event {
        Event::SessionStarted {
            session: id.into(),
            agent: agent.into(),
            provider: "scripted".into(),
            model: "small".into(),
        }
    }

    /// One model turn that used `input` prompt tokens, `cached` of them
    /// read from the prompt cache and `written` written to it.
    fn turn(
        session: &str,
        latency_ms: u64,
        (input, cached, written): (u64, u64, u64),
        output: u64,
    ) -> Vec<Event> {
        vec![
            Event::ModelRequest {
                session: session.into(),
                turn: 1,
                messages: 2,
                tools: 5,
            },
            Event::Usage {
                session: session.into(),
                agent: String::new(),
                usage: Usage {
                    input,
                    output,
                    cached_input: cached,
                    cache_write: written,
                    reasoning: 0,
                },
            },
            Event::ModelResponse {
                session: session.into(),
                turn: 1,
                finish: Some(FinishReason::ToolCalls),
                tool_calls: 1,
                latency_ms,
            },
        ]
    }

    fn queued(task: &str, agent: &str, description: &str) -> Event {
        Event::TaskQueued {
            task: task.into(),
            agent: agent.into(),
            description: description.into(),
            background: true,
            parent: "commander-1".into(),
            prompt: description.into(),
        }
    }

    fn started(task: &str, agent: &str, session: &str, creations: u64) -> Event {
        Event::TaskStarted {
            task: task.into(),
            agent: agent.into(),
            session: session.into(),
            reused: false,
            pool: PoolStats {
                creations,
                reuse_hits: 0,
                evictions: 0,
                idle: 0,
            },
            worktree: None,
        }
    }

    fn tool(session: &str, name: &str, ok: bool, preview: &str) -> Vec<Event> {
        vec![
            Event::ToolCallBegin {
                session: session.into(),
                call_id: "c".into(),
                tool: name.into(),
                arguments: serde_json::json!({}),
            },
            Event::ToolCallEnd {
                session: session.into(),
                call_id: "c".into(),
                tool: name.into(),
                ok,
                duration_ms: 12,
                preview: preview.into(),
            },
        ]
    }

    const PLAN: &str = "# Mission: Add JWT authentication
## T1: Token service | agent:Worker
- [x] T1.1: Create src/auth/token.rs
- [/] T1.2: Unit tests for token expiry
  - [ ] T1.2.1: Expired tokens are refused
## T2: Middleware
- [-] T2.1: Reject requests without a token
- [ ] T2.2: Document the header
";

    /// Mid-mission: two Workers busy, one task queued, a failed gate.
    fn busy() -> View {
        let mut events = vec![mission_started(), session("commander-1", "Commander")];
        events.extend(turn("commander-1", 420, (3000, 0, 2400), 200));
        events.push(queued("t1", "Worker", "T1.2 unit tests"));
        events.push(queued("t2", "Worker", "T2.1 reject requests"));
        events.push(queued("t3", "Reviewer", "review T1"));
        events.push(session("worker-1", "Worker"));
        events.push(started("t1", "Worker", "worker-1", 1));
        events.push(session("worker-2", "Worker"));
        events.push(started("t2", "Worker", "worker-2", 2));
        events.extend(turn("worker-1", 250, (1500, 1200, 0), 100));
        events.extend(turn("worker-2", 310, (1400, 1200, 0), 90));
        events.extend(tool("worker-2", "write", true, "wrote src/mw.rs"));
        events.extend(tool(
            "worker-2",
            "bash",
            false,
            "error[E0425]: cannot find value `token`",
        ));
        events.push(Event::ToolCallBegin {
            session: "worker-1".into(),
            call_id: "c9".into(),
            tool: "bash".into(),
            arguments: serde_json::json!({"command": "cargo test"}),
        });
        events.push(Event::SessionFinished {
            session: "commander-1".into(),
            agent: "Commander".into(),
            outcome: SessionOutcome::Completed,
            turns: 1,
            usage: Usage::default(),
            error: None,
        });
        events.push(Event::PlanUpdated {
            counts: PlanCounts {
                total: 5,
                done: 1,
                in_progress: 1,
                failed: 1,
            },
        });
        events.push(Event::GateChecked {
            mission: "m-test".into(),
            iteration: 1,
            passed: false,
            open_items: vec![
                "T1.2 (in progress): Unit tests for token expiry".into(),
                "T2.1 (failed): Reject requests without a token".into(),
            ],
            sync_issues: vec![],
            verify: vec![VerifyResult {
                command: "cargo test".into(),
                passed: false,
                exit_code: Some(101),
                duration_ms: 900,
                output_tail: "test failed".into(),
            }],
            note: None,
        });
        events.push(Event::Warning {
            session: None,
            message: "plugin \"notes.wasm\": trapped in call-tool".into(),
        });
        let mut view = view(events);
        view.set_plan(Plan::parse(PLAN));
        view
    }

    fn ui() -> Ui {
        Ui {
            color: true,
            ..Ui::default()
        }
    }

    #[test]
    fn frame_before_the_mission_starts() {
        let view = View::new(None, crate::models::Prices::default());
        insta::assert_snapshot!(draw(&view, &ui(), 100, 24));
    }

    #[test]
    fn frame_mid_mission_with_busy_workers_and_a_failed_gate() {
        let view = busy();
        let frame = draw(&view, &ui(), 110, 30);
        // The numbers on screen are the events' numbers.
        assert!(frame.contains("Plan · 1/5 done"), "{frame}");
        assert!(frame.contains("running bash"), "{frame}");
        assert!(frame.contains("queue 1"), "{frame}");
        assert!(frame.contains("p50 310 ms"), "{frame}");
        // 2 400 of 5 900 prompt tokens read from the cache, 2 400 written.
        assert!(
            frame.contains("tokens 5.9k in (41% cached, 2.4k written), 390 out · cost $0.0075"),
            "{frame}"
        );
        insta::assert_snapshot!(frame);
    }

    #[test]
    fn the_budgets_show_beside_what_was_spent() {
        let mut events = vec![
            mission_with_budgets(Some(20_000), Some(0.05)),
            session("commander-1", "Commander"),
        ];
        events.extend(turn("commander-1", 420, (3000, 0, 0), 200));
        events.extend(turn("commander-1", 380, (3500, 3000, 0), 300));
        let frame = draw(&view(events), &ui(), 150, 24);
        // 6 500 prompt and 500 output tokens: $0.0065 + $0.0020 at the
        // test's price, beside each budget.
        assert!(
            frame.contains("cost $0.0085 · token budget 7.0k of 20.0k · budget $0.0085 of $0.0500"),
            "{frame}"
        );
        // Without budgets, no budget is shown.
        let mut events = vec![mission_started(), session("commander-1", "Commander")];
        events.extend(turn("commander-1", 420, (3000, 0, 0), 200));
        let frame = draw(&view(events), &ui(), 150, 24);
        assert!(!frame.contains("budget"), "{frame}");
    }

    #[test]
    fn frame_when_the_mission_is_complete() {
        let mut view = busy();
        let mut events = vec![
            session("reviewer-1", "Reviewer"),
            started("t3", "Reviewer", "reviewer-1", 3),
        ];
        events.extend(turn("reviewer-1", 180, (900, 600, 0), 40));
        for (task, agent, session) in [
            ("t1", "Worker", "worker-1"),
            ("t2", "Worker", "worker-2"),
            ("t3", "Reviewer", "reviewer-1"),
        ] {
            events.push(Event::SessionFinished {
                session: session.into(),
                agent: agent.into(),
                outcome: SessionOutcome::Completed,
                turns: 2,
                usage: Usage::default(),
                error: None,
            });
            events.push(Event::TaskFinished {
                task: task.into(),
                agent: agent.into(),
                status: TaskStatus::Completed,
                error: None,
                result: None,
                turns: 0,
            });
        }
        events.push(Event::GateChecked {
            mission: "m-test".into(),
            iteration: 2,
            passed: true,
            open_items: vec![],
            sync_issues: vec![],
            verify: vec![],
            note: None,
        });
        events.push(Event::MissionFinished {
            mission: "m-test".into(),
            outcome: MissionOutcome::Complete,
            reason: "all 5 plan items are done and cargo test passed".into(),
            iterations: 2,
            usage: Usage::default(),
            cost_usd: None,
        });
        for (i, event) in events.into_iter().enumerate() {
            view.apply(&Envelope {
                seq: 100 + i as u64,
                ts_ms: START + 40_000 + i as u64 * 1000,
                event,
            });
        }
        view.set_plan(Plan::parse(
            &PLAN
                .replace("[/]", "[x]")
                .replace("[ ]", "[x]")
                .replace("[-]", "[x]"),
        ));
        insta::assert_snapshot!(draw(&view, &ui(), 110, 30));
    }

    #[test]
    fn a_tasks_worktree_and_merge_show_beside_it() {
        let mut view = busy();
        let worker = view
            .tasks
            .iter()
            .find(|t| t.status == TaskStatus::Running)
            .map(|t| t.id.clone())
            .expect("a running task");
        let frame = draw(&view, &ui(), 110, 30);
        assert!(!frame.contains("· landed"), "{frame}");
        view.apply(&Envelope {
            seq: 500,
            ts_ms: START + 50_000,
            event: Event::TaskLanded {
                task: worker.clone(),
                files: vec!["src/auth.rs".into(), "src/lib.rs".into()],
                conflicts: vec![],
                item: None,
            },
        });
        let frame = draw(&view, &ui(), 180, 30);
        assert!(frame.contains("· landed 2 file(s)"), "{frame}");
        assert!(
            frame.contains(&format!("{worker} landed: src/auth.rs, src/lib.rs")),
            "{frame}"
        );
    }

    #[test]
    fn frame_asking_to_cancel_and_read_only_footer() {
        let view = busy();
        let confirm = Ui {
            confirm_cancel: true,
            ..ui()
        };
        insta::assert_snapshot!("confirm_cancel", draw(&view, &confirm, 100, 26));
        let read_only = Ui {
            read_only: true,
            color: false,
            ..Ui::default()
        };
        let frame = draw(&view, &read_only, 100, 26);
        assert!(frame.contains("read-only"), "{frame}");
        assert!(!frame.contains("c cancel"), "{frame}");
    }

    #[test]
    fn the_log_scrolls_back_and_tiny_terminals_do_not_panic() {
        let mut events = vec![mission_started()];
        for i in 0..40 {
            events.push(Event::Warning {
                session: None,
                message: format!("note {i}"),
            });
        }
        let view = view(events);
        let following = draw(&view, &ui(), 80, 24);
        assert!(following.contains("note 39"), "{following}");
        let back = Ui { scroll: 10, ..ui() };
        let scrolled = draw(&view, &back, 80, 24);
        assert!(!scrolled.contains("note 39"), "{scrolled}");
        assert!(scrolled.contains("note 29"), "{scrolled}");
        assert!(scrolled.contains("10 newer below"), "{scrolled}");
        for (w, h) in [(1, 1), (10, 3), (20, 8), (200, 5)] {
            draw(&view, &ui(), w, h);
        }
    }
}
