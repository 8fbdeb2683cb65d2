//! Mission commands: `task`, `plan`, `resume`, `status`, `cancel`, `agents`
//! and `demo`. They wire the engine's parts together; the mission
//! loop itself lives in `crate::mission`.

use std::io::{Read, Write as _};
use std::sync::Arc;

use anyhow::{Context as _, anyhow, bail};

use super::args::GoalArgs;
use super::status::{alive, already_running, running_mission};
use super::{AfterStart, Cli, Project, exit};
use crate::agents::AgentRegistry;
use crate::config::MissionConfig;
use crate::events::{Event, MissionOutcome, SessionOutcome};
use crate::files::{self, Durability};
use crate::mission::budget::Budget;
use crate::mission::guards::StopSignal;
use crate::mission::state::{self, MissionPaths, MissionState, MissionStatus, StateSink};
use crate::mission::{Mission, MissionReport, Start, gate};
use crate::provider::ModelClient;
use crate::session::Session;
use crate::session::tasks::{RestoredTask, SetupFor, Tasks};
use crate::text::one_line;

pub async fn task(cli: &Cli, args: &GoalArgs) -> anyhow::Result<u8> {
    let mut ctx = Project::load(cli)?;
    let goal = read_goal(cli, &mut ctx, args)?;
    let client = ctx.model_client()?;
    check_prices(cli, &ctx)?;
    run_new_mission(cli, &ctx, client, &goal).await
}

/// Start a new mission on `goal` and run it to its end.
async fn run_new_mission(
    cli: &Cli,
    ctx: &Project,
    client: Arc<dyn ModelClient>,
    goal: &str,
) -> anyhow::Result<u8> {
    if let Some(running) = running_mission(&ctx.root) {
        bail!("{}", already_running(&running));
    }
    reap_leftovers(ctx);
    settle_unmerged(ctx)?;
    let id = new_mission_id();
    start_mission(cli, ctx, client, goal, &id)
        .await
        .map_err(|err| err.context(AfterStart(id)))
}

/// A new mission does not silently delete an interrupted one's unmerged
/// work: on a terminal the user is asked; headless it refuses, naming the
/// two ways on.
fn settle_unmerged(ctx: &Project) -> anyhow::Result<()> {
    use std::io::{BufRead as _, Write as _};
    let Some(id) = state::latest_mission(&ctx.root) else {
        return Ok(());
    };
    let tasks = crate::worktree::unmerged(&ctx.root, &id);
    if tasks.is_empty() || super::changes::abandoned(&ctx.root, &id) {
        return Ok(());
    }
    let what = format!(
        "mission {id} stopped with unmerged work in the worktrees of {}",
        tasks.join(", ")
    );
    if !ctx.interactive {
        bail!("{what}; `orch resume` continues it, `orch abandon` deletes it");
    }
    let mut err = std::io::stderr();
    let _ = write!(err, "{what}.\nDelete it and start a new mission? [y/N] ");
    let _ = err.flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if !matches!(answer.trim(), "y" | "Y" | "yes" | "Yes") {
        bail!("kept; `orch resume` continues mission {id}");
    }
    super::changes::abandon_mission(&ctx.root, &id)?;
    Ok(())
}

/// Kill what a killed run of the latest mission left running: the process
/// groups its state recorded, where they are still the recorded ones (the
/// watchdog normally took them down already). Never while the mission's
/// process still runs.
fn reap_leftovers(ctx: &Project) {
    let Some(id) = state::latest_mission(&ctx.root) else {
        return;
    };
    let Ok(saved) = state::read_state(&ctx.root, &id) else {
        return;
    };
    if saved.processes.is_empty() || (alive(saved.pid) && saved.pid != std::process::id()) {
        return;
    }
    let killed = crate::process::reap(&saved.processes);
    if killed > 0 {
        ctx.warn([format!(
            "killed {killed} process group{} that a stopped run of mission {id} left running",
            if killed == 1 { "" } else { "s" }
        )]);
    }
}

/// Create mission `id`'s files and run it to its end.
async fn start_mission(
    cli: &Cli,
    ctx: &Project,
    client: Arc<dyn ModelClient>,
    goal: &str,
    id: &str,
) -> anyhow::Result<u8> {
    let id = id.to_string();
    let paths = MissionPaths::new(&ctx.root, &id);
    std::fs::create_dir_all(&paths.dir)
        .with_context(|| format!("creating {}", paths.dir.display()))?;
    // A plan with open items (written by `orch plan`, or by hand) is the
    // plan for this mission. A finished or empty one belonged to an earlier
    // goal: it is kept beside this mission's files and a new plan starts.
    let plan_path = ctx.root.join(".opencode").join("todo.md");
    let existing = std::fs::read_to_string(&plan_path)
        .ok()
        .map(|text| crate::todo::Plan::parse(&text).progress());
    let keep_plan = existing
        .as_ref()
        .is_some_and(|progress| !progress.blockers.is_empty());
    if !keep_plan {
        if existing.is_some() {
            std::fs::rename(&plan_path, paths.dir.join("previous-todo.md"))
                .with_context(|| format!("moving the previous plan {}", plan_path.display()))?;
        }
        files::replace(
            &plan_path,
            format!("# Mission: {}\n", one_line(goal)).as_bytes(),
            Durability::Synced,
        )
        .with_context(|| format!("writing {}", plan_path.display()))?;
    }
    let wired = wire(
        cli,
        ctx,
        client,
        &paths,
        MissionState::new(&id, goal, 0, ""),
    )
    .await?;
    let commander = wired.commander(None)?;
    // What `orch diff` and `orch undo` compare against.
    let (root, mission) = (ctx.root.clone(), id.clone());
    let checkpoint =
        tokio::task::spawn_blocking(move || crate::worktree::checkpoint(&root, &mission, "start"))
            .await
            .unwrap_or_else(|err| Err(err.to_string()));
    if let Err(err) = checkpoint {
        ctx.warn([format!(
            "no start checkpoint ({err}); orch diff and orch undo will not know this mission"
        )]);
    }
    state::set_latest(&ctx.root, &id).context("recording the latest mission")?;
    ctx.events.emit(Event::MissionStarted {
        mission: id.clone(),
        pid: std::process::id(),
        sandbox: crate::sandbox::current()
            .map_or("off", |sandbox| sandbox.mode.name())
            .to_string(),
        goal: goal.to_string(),
        root: ctx.root.display().to_string(),
        max_iterations: wired.mission.config.max_iterations,
        commander_session: commander.id().to_string(),
        resumed: false,
        budget_tokens: wired.mission.config.budget_tokens,
        budget_usd: wired.mission.config.budget_usd,
    });
    let mut first = first_message(
        goal,
        &wired.mission.verify,
        wired.mission.config.max_iterations,
        wired.mission.tasks.worktrees().is_some(),
    );
    if let Some(progress) = existing.filter(|_| keep_plan) {
        first.push_str(&format!(
            "\n\nA plan already exists in .opencode/todo.md ({progress}); read it with read_todo and use it where it fits the goal."
        ));
    }
    let live = ctx.start_live();
    let report = wired
        .mission
        .run(commander, Start::Message(first), 0, ctx.cancel.clone())
        .await;
    if let Some(live) = live {
        live.finish().await;
    }
    notify_end(ctx, goal, &report).await;
    Ok(exit_code(report.outcome))
}

/// A desktop notification that the mission ended (unless turned off or CI).
async fn notify_end(ctx: &Project, goal: &str, report: &MissionReport) {
    let title = format!(
        "orch: mission {}",
        crate::monitor::view::outcome_word(report.outcome)
    );
    let body = format!("{}\n{}", one_line(goal), report.reason);
    crate::monitor::notify::mission_ended(ctx.config.notifications(), &title, &body).await;
}

/// Everything a mission run needs, wired for one project.
struct MissionSetup {
    mission: Mission,
    setup_for: SetupFor,
    agents: AgentRegistry,
}

impl MissionSetup {
    /// The Commander's session: new, or reopened from its transcript.
    fn commander(&self, restore: Option<&str>) -> anyhow::Result<Session> {
        let agent = self
            .agents
            .find("Commander")
            .ok_or_else(|| anyhow!("the Commander agent is missing"))?;
        let setup = (self.setup_for)(agent);
        let runtime = self.mission.tasks.runtime().clone();
        Ok(match restore {
            Some(id) => Session::restore(runtime, setup, id)
                .with_context(|| format!("reopening the Commander's transcript {id}"))?,
            None => Session::new(runtime, setup).context("creating the Commander's session")?,
        })
    }
}

async fn wire(
    cli: &Cli,
    ctx: &Project,
    client: Arc<dyn ModelClient>,
    paths: &MissionPaths,
    initial: MissionState,
) -> anyhow::Result<MissionSetup> {
    let (agents, warnings) = ctx.agents();
    ctx.warn(warnings);
    let config = mission_config(cli, ctx);
    let stop = Arc::new(StopSignal::new());
    let prices = super::prices(&ctx.config);
    if let Some(budget) = Budget::new(
        config.budget_tokens,
        config.budget_usd,
        stop.clone(),
        prices.clone(),
        &initial,
    ) {
        ctx.events.add_sink(Arc::new(budget));
    }
    let state = Arc::new(
        StateSink::new(paths, initial, prices.clone())
            .with_budgets(config.budget_tokens, config.budget_usd)
            .warning_on(&ctx.events, Some(super::record_alarm())),
    );
    ctx.record_into(&paths.journal(), vec![state.clone()])?;
    if let Err(err) = StateSink::record_groups(&state) {
        ctx.warn([format!(
            "cannot follow process groups as they start ({err}); they are recorded with the next event"
        )]);
    }
    let default_model = ctx.default_model()?;
    let setup_for: SetupFor = {
        let ctx_setup = SessionDefaults {
            config: ctx.config.clone(),
            default_model,
        };
        Arc::new(move |agent| ctx_setup.setup(agent))
    };
    let (runtime, todo) = ctx.runtime(client).await;
    // The Mission tier lives beside the mission's state (a resume gets it back).
    if let Err(err) = runtime.memory.attach_mission(&paths.dir) {
        ctx.warn([format!(
            "{err}; this mission starts with an empty mission memory"
        )]);
    }
    let tasks = Tasks::new(
        runtime,
        agents.clone(),
        setup_for.clone(),
        ctx.config.concurrency.clone(),
        ctx.config.pool.clone(),
        config.max_depth,
        stop.token().clone(),
    );
    if config.budget_usd.is_some() {
        tasks.keep_budget_with(prices);
    }
    ctx.follow_plugin_agents(&tasks, &agents);
    let mission_id = paths
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if ctx.config.worktrees != Some(false)
        && let Some(why) = crate::worktree::old_git()
        && crate::worktree::Git::at_top(&ctx.root).is_some()
    {
        ctx.warn([why]);
    }
    if ctx.config.worktrees != Some(false)
        && let Some(worktrees) = crate::worktree::Worktrees::new(&ctx.root, &mission_id)
    {
        tasks.isolate(
            worktrees,
            todo.clone(),
            cli.keep_worktrees,
            ctx.jobs.clone(),
        );
    }
    let verify = gate::verify_commands(&ctx.root, ctx.config.verify.as_deref());
    Ok(MissionSetup {
        mission: Mission {
            id: paths
                .dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            root: ctx.root.clone(),
            config,
            verify,
            events: ctx.events.clone(),
            tasks,
            jobs: ctx.jobs.clone(),
            todo,
            state,
            paths: paths.clone(),
            stop,
        },
        setup_for,
        agents,
    })
}

/// The mission settings: orch.json's, with the flags over them.
fn mission_config(cli: &Cli, ctx: &Project) -> MissionConfig {
    let mut config = ctx.config.mission.clone();
    if let Some(max) = cli.max_iterations {
        config.max_iterations = max;
    }
    if cli.budget_tokens.is_some() {
        config.budget_tokens = cli.budget_tokens;
    }
    if cli.budget_usd.is_some() {
        config.budget_usd = cli.budget_usd;
    }
    config
}

/// A dollar budget holds only if every model the mission can use has a
/// price: refuse to start otherwise, naming the models and the key to add.
fn check_prices(cli: &Cli, ctx: &Project) -> anyhow::Result<()> {
    if mission_config(cli, ctx).budget_usd.is_none() {
        return Ok(());
    }
    let default_model = ctx.default_model()?;
    let (agents, _) = ctx.agents();
    let mut models: Vec<String> = agents
        .iter()
        .map(|agent| super::session_setup(&ctx.config, agent, &default_model).model)
        .collect();
    models.sort();
    models.dedup();
    let prices = super::prices(&ctx.config);
    let unpriced: Vec<String> = models
        .into_iter()
        .filter(|model| prices.get(model).is_none())
        .map(|model| format!("\"{model}\""))
        .collect();
    if unpriced.is_empty() {
        return Ok(());
    }
    let keys: Vec<String> = unpriced
        .iter()
        .map(|model| format!("pricing.{model}"))
        .collect();
    bail!(
        "--budget-usd needs a price for every model this mission can use, and {} {} none: set {} in .opencode/orch.json, e.g. \"pricing\": {{ {}: {{ \"input\": 0.5, \"output\": 1.5 }} }} (US dollars per million tokens, what your provider charges). orch's built-in prices are vendors' list prices for their own APIs as of {}; an open-weight model only others host has none",
        unpriced.join(", "),
        if unpriced.len() == 1 { "has" } else { "have" },
        keys.join(", "),
        unpriced[0],
        crate::models::PRICES_AS_OF,
    )
}

/// The session defaults of this run (config and default model), cloneable
/// into the closure `Tasks` calls for each agent's setup.
struct SessionDefaults {
    config: crate::config::Config,
    default_model: String,
}

impl SessionDefaults {
    fn setup(&self, agent: &crate::agents::Agent) -> crate::session::SessionSetup {
        super::session_setup(&self.config, agent, &self.default_model)
    }
}

/// The Commander's first message. Volatile details (the iteration budget)
/// go last; the system prompt before it never changes.
fn first_message(goal: &str, verify: &[String], max_iterations: u32, worktrees: bool) -> String {
    let checks = if verify.is_empty() {
        "no verification commands are configured or detected".to_string()
    } else {
        format!(
            "the project's checks pass: {}",
            verify
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let workers = if worktrees {
        "Each Worker task runs in a git worktree of its own; when it completes the engine merges \
         its change into the project (the Reviewer and the checks see the merged result). A change \
         that conflicts with work merged first lands nothing and comes back as a plan item: \
         delegate it to a Worker, naming the item."
    } else {
        "Workers share the project's tree: a write to a file another Worker changed since it read \
         it is refused (it reads again and redoes its change), so give parallel Workers different \
         files where you can."
    };
    format!(
        "Mission goal: {goal}\n\n\
         The plan lives in .opencode/todo.md (read_todo). When you end your turn the engine checks \
         completion: every plan item is [x] at every depth, no sync issue is open, and {checks}. \
         If anything fails you get a message saying what.\n\n\
         {workers}\n\n\
         You have up to {max_iterations} iterations."
    )
}

/// The goal from the command line or standard input, a `/name` custom
/// command expanded (`super::commands::expand_goal`), refused when it is
/// empty or larger than `mission.max_goal_bytes` (it goes into the plan and
/// the Commander's first message, so into every request).
fn read_goal(cli: &Cli, ctx: &mut Project, args: &GoalArgs) -> anyhow::Result<String> {
    let text = if args.goal == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the goal from standard input")?;
        text
    } else {
        args.goal.clone()
    };
    let text = super::commands::expand_goal(cli, ctx, &text, &args.args)?;
    let max_bytes = ctx.config.mission.max_goal_bytes;
    let text = text.trim().to_string();
    if text.is_empty() {
        bail!("the goal is empty");
    }
    if text.len() > max_bytes {
        bail!(
            "the goal is {} bytes and orch puts it into every request of the Commander; the most is {max_bytes} (mission.max_goal_bytes): put the details in a file of the project and give a short goal that names it, e.g. `orch task \"Implement what docs/spec.md describes\"`",
            text.len()
        );
    }
    Ok(text)
}

fn exit_code(outcome: MissionOutcome) -> u8 {
    match outcome {
        MissionOutcome::Complete => exit::COMPLETE,
        MissionOutcome::Stopped => exit::UNFINISHED,
        MissionOutcome::Cancelled => super::interrupted_code(),
    }
}

/// `m-<time in base 36>-<random>`: sortable, unique across processes.
fn new_mission_id() -> String {
    crate::events::unique_id("m")
}

pub async fn plan(cli: &Cli, args: &GoalArgs) -> anyhow::Result<u8> {
    let mut ctx = Project::load(cli)?;
    let goal = read_goal(cli, &mut ctx, args)?;
    let client = ctx.model_client()?;
    ctx.record_into(&super::run::journal_path(&ctx.root), Vec::new())?;
    let (agents, warnings) = ctx.agents();
    ctx.warn(warnings);
    let planner = agents
        .find("Planner")
        .cloned()
        .ok_or_else(|| anyhow!("the Planner agent is missing"))?;
    let default_model = ctx.default_model()?;
    let (runtime, todo) = ctx.runtime(client).await;
    if !todo.exists().await {
        todo.write_plan(&format!("# Mission: {}\n", one_line(&goal)))
            .await
            .map_err(|err| anyhow!("{err}"))?;
    }
    let mut session = Session::new(runtime, ctx.setup(&planner, &default_model))
        .context("creating the Planner's session")?;
    let prompt = format!(
        "Write the plan for this goal into .opencode/todo.md with add_todo (one call per item): {goal}"
    );
    let report = session.run(&prompt, &ctx.cancel).await;
    if report.outcome == SessionOutcome::Cancelled {
        return Ok(super::interrupted_code());
    }
    let plan = todo.read().await.ok();
    let items = plan.as_ref().map_or(0, |p| p.progress().counts.total());
    if let Some(plan) = &plan {
        ctx.events.emit(Event::PlanUpdated {
            counts: gate::plan_counts(plan),
        });
    }
    Ok(
        if report.outcome == SessionOutcome::Completed && items > 0 {
            exit::COMPLETE
        } else {
            exit::UNFINISHED
        },
    )
}

pub async fn resume(cli: &Cli) -> anyhow::Result<u8> {
    let ctx = Project::load(cli)?;
    let id = state::latest_mission(&ctx.root)
        .ok_or_else(|| anyhow!("no mission to resume in {}", ctx.root.display()))?;
    // The journal goes on where it stopped: numbers continue.
    ctx.events.continue_after(state::last_seq(
        &MissionPaths::new(&ctx.root, &id).journal(),
    ));
    let saved = state::read_state(&ctx.root, &id).map_err(|err| anyhow!(err))?;
    if saved.status == MissionStatus::Complete {
        bail!("mission {id} is complete; start a new one with `orch task`");
    }
    if super::changes::abandoned(&ctx.root, &id) {
        bail!("mission {id} was abandoned; start a new one with `orch task`");
    }
    // The mission goes on: the end it had is no longer its end.
    crate::worktree::forget_checkpoint(&ctx.root, &id, "end");
    if saved.status == MissionStatus::Running && alive(saved.pid) && saved.pid != std::process::id()
    {
        bail!(
            "mission {id} is still running (process {}); `orch cancel` stops it",
            saved.pid
        );
    }
    let client = ctx.model_client()?;
    check_prices(cli, &ctx)?;
    reap_leftovers(&ctx);
    let paths = MissionPaths::new(&ctx.root, &id);
    let _ = std::fs::remove_file(paths.cancel_request());
    let started = |err: anyhow::Error| err.context(AfterStart(id.clone()));
    let wired = wire(cli, &ctx, client, &paths, saved.clone())
        .await
        .map_err(started)?;
    let commander = wired
        .commander(Some(&saved.commander_session))
        .map_err(started)?;
    ctx.events.emit(Event::MissionStarted {
        mission: id.clone(),
        pid: std::process::id(),
        sandbox: crate::sandbox::current()
            .map_or("off", |sandbox| sandbox.mode.name())
            .to_string(),
        goal: saved.goal.clone(),
        root: ctx.root.display().to_string(),
        max_iterations: wired.mission.config.max_iterations,
        commander_session: commander.id().to_string(),
        resumed: true,
        budget_tokens: wired.mission.config.budget_tokens,
        budget_usd: wired.mission.config.budget_usd,
    });
    let mut restarted = Vec::new();
    for (task_id, task) in &saved.tasks {
        // A result the Commander's conversation already holds (a message or
        // a tool result) was delivered, recorded or not.
        let header = format!("{task_id} ({}, \"{}\"): ", task.agent, task.description);
        let delivered = task.reported
            || commander
                .messages()
                .iter()
                .any(|message| message.text().contains(&header));
        let restored = RestoredTask {
            agent: task.agent.clone(),
            description: task.description.clone(),
            prompt: task.prompt.clone(),
            status: task.status,
            background: task.background,
            session: task.session.clone(),
            result: task.result.clone(),
            error: task.error.clone(),
            turns: task.turns,
            reported: delivered,
        };
        match wired
            .mission
            .tasks
            .restore(task_id, restored, commander.id())
        {
            Ok(()) if !task.status.is_finished() => restarted.push(format!(
                "- {task_id} ({}): {}",
                task.agent, task.description
            )),
            Ok(()) => {}
            Err(message) => ctx.warn([message]),
        }
    }
    let mut note = format!(
        "The mission was interrupted and has been resumed (iteration {} of {}). Completed plan items are kept in .opencode/todo.md; check it with read_todo.",
        saved.iteration, wired.mission.config.max_iterations
    );
    if !restarted.is_empty() {
        note.push_str(&format!(
            "\n\nThese tasks were still running and were restarted in the background; their results arrive as messages:\n{}",
            restarted.join("\n")
        ));
    }
    let live = ctx.start_live();
    let report = wired
        .mission
        .run(
            commander,
            Start::Resume(Some(note)),
            saved.iteration,
            ctx.cancel.clone(),
        )
        .await;
    if let Some(live) = live {
        live.finish().await;
    }
    notify_end(&ctx, &saved.goal, &report).await;
    Ok(exit_code(report.outcome))
}

pub async fn demo(cli: &Cli) -> anyhow::Result<u8> {
    let dir = tempfile::Builder::new()
        .prefix("orch-demo-")
        .tempdir()
        .context("creating the demo project")?
        .keep();
    super::demo::create_project(&dir).context("writing the demo project")?;
    let cli_for_demo = Cli {
        dir: Some(dir.clone()),
        json: cli.json,
        provider: Some("scripted".into()),
        model: None,
        script: None,
        max_iterations: cli.max_iterations,
        budget_tokens: cli.budget_tokens,
        budget_usd: cli.budget_usd,
        quiet: cli.quiet,
        verbose: cli.verbose,
        sandbox: cli.sandbox,
        // orch wrote this project, settings and all.
        trust_project: true,
        keep_worktrees: cli.keep_worktrees,
        command: super::Command::Demo,
    };
    let ctx = Project::load(&cli_for_demo)?;
    let client = super::demo::client()?;
    if !cli.json {
        let _ = writeln!(std::io::stdout(), "demo project: {}", dir.display());
    }
    let code = run_new_mission(&cli_for_demo, &ctx, client, super::demo::GOAL).await?;
    if !cli.json {
        let _ = writeln!(
            std::io::stdout(),
            "\nthe demo project is at {}",
            dir.display()
        );
        let _ = writeln!(
            std::io::stdout(),
            "look at it: cat {}/src/lib.rs; cat {}/.opencode/todo.md",
            dir.display(),
            dir.display()
        );
    }
    Ok(code)
}
