//! `concierge`: the whole system on one machine (the default), the API or the workers alone,
//! and the benchmark.

use anyhow::Context;
use clap::{Parser, Subcommand};
use concierge::{Database, System, bench};
use concierge_shared::{
    config::{self, Config, Settings},
    telemetry,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(about = "Concierge, the Lectio support desk", version, after_help = config::HELP_FOOTER)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    settings: Settings,
}

#[derive(Subcommand)]
enum Command {
    /// Run everything in one process (the default): a private PostgreSQL when DATABASE_URL is
    /// unset, migrations, the knowledge base, the API and the workers.
    Run,
    /// Run the HTTP API only (needs DATABASE_URL).
    Api,
    /// Run the job workers only (needs DATABASE_URL).
    Worker(concierge_worker::WorkerArgs),
    /// Apply database migrations and exit (needs DATABASE_URL).
    Migrate,
    /// Load the action definitions from fixtures/initial_actions.json (idempotent; admins'
    /// on/off switches are kept). Uses the private cluster when DATABASE_URL is unset.
    LoadFixtures,
    /// Index the knowledge directory into the database now and print the report (uses the
    /// private cluster when DATABASE_URL is unset). Running workers reload within seconds.
    Reindex,
    /// Measure answer quality on the labelled sets in fixtures/eval.
    #[command(subcommand)]
    Eval(EvalCommand),
    /// The support bot: register or remove its webhook, show what Telegram knows of it.
    #[command(subcommand)]
    Telegram(TelegramCommand),
    /// Benchmarks: the system (intake, answer latency, idle streams, on a private cluster), a
    /// flood against the limits while normal conversations run (`abuse`), or the knowledge
    /// search (build time, latency, memory for a synthetic base).
    Bench {
        #[arg(value_enum, default_value = "system")]
        what: BenchTarget,
        #[command(flatten)]
        system: bench::BenchArgs,
        #[command(flatten)]
        knowledge: concierge::bench_knowledge::KnowledgeBenchArgs,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum BenchTarget {
    System,
    Abuse,
    Knowledge,
    Saturate,
}

#[derive(Subcommand)]
enum TelegramCommand {
    /// Point Telegram at this installation's webhook, with CONCIERGE_WEBHOOK_SECRET.
    SetWebhook {
        /// The public HTTPS URL of `/api/concierge/telegram/webhook/`.
        #[arg(long)]
        url: String,
        /// Drop the updates Telegram is holding for the bot.
        #[arg(long)]
        drop_pending: bool,
    },
    /// Remove the webhook (before switching to polling elsewhere).
    DeleteWebhook,
    /// The bot, and Telegram's view of its webhook.
    Info,
}

#[derive(Subcommand)]
enum EvalCommand {
    /// Knowledge search: recall@1, recall@5, MRR@10, out-of-scope rejection, and the misses.
    Retrieval(concierge::eval::RetrievalArgs),
    /// Decisions (answer, clarify, action, escalate) of the configured engine on labelled
    /// conversations: accuracy, citation accuracy, action accuracy, and the misses; with
    /// --compare, two prompt versions side by side with McNemar's exact test. Each run is
    /// recorded in the database (DATABASE_URL, else the private cluster) unless --no-record.
    Decisions(concierge::eval::DecisionArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init();
    let cli: Cli = config::parse_cli();
    let config = cli.settings.resolve()?;
    let shutdown = CancellationToken::new();
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            tokio::spawn(concierge_shared::shutdown_on_signal(shutdown.clone()));
            run_all(config, shutdown).await
        }
        Command::Api => {
            tokio::spawn(concierge_shared::shutdown_on_signal(shutdown.clone()));
            concierge_api::run(config, shutdown).await
        }
        Command::Worker(args) => {
            tokio::spawn(concierge_shared::shutdown_on_signal(shutdown.clone()));
            let options = args.options()?;
            let pool = concierge_shared::db::connect(config.require_database_url()?, config.db_max_connections).await?;
            let ctx = concierge_worker::Context::build(&config, pool).await?;
            if args.noop_handler {
                return concierge_worker::run_noop(&config, ctx, options.concurrency, shutdown).await;
            }
            concierge_worker::run(&config, ctx, options, shutdown).await
        }
        Command::Migrate => {
            let pool = concierge_shared::db::connect(config.require_database_url()?, 2).await?;
            concierge_shared::db::migrate(&pool).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::LoadFixtures => {
            let database = Database::open(&config).await?;
            let result = async {
                let pool = concierge_shared::db::connect(&database.url, 2).await?;
                concierge_shared::db::migrate(&pool).await?;
                let loaded =
                    concierge_shared::actions::load_fixtures(&pool, &config.fixtures_dir.join("initial_actions.json"))
                        .await?;
                println!("{loaded} action definitions loaded");
                anyhow::Ok(())
            }
            .await;
            database.close().await?;
            result
        }
        Command::Reindex => {
            let database = Database::open(&config).await?;
            let result = reindex(&config, &database.url).await;
            database.close().await?;
            result
        }
        Command::Eval(EvalCommand::Decisions(args)) => concierge::eval::decisions_command(&config, &args).await,
        Command::Eval(EvalCommand::Retrieval(args)) => {
            let figures = concierge::eval::retrieval(&config, &args).await?;
            concierge::eval::print_retrieval(&figures, args.all_misses);
            Ok(())
        }
        Command::Telegram(command) => telegram(&config, command).await,
        Command::Bench { what, system, knowledge } => match what {
            BenchTarget::System => bench::run(config, system).await,
            BenchTarget::Abuse => concierge::bench_abuse::run(config, system).await,
            BenchTarget::Saturate => concierge::bench_saturate::run(config, system).await,
            BenchTarget::Knowledge => concierge::bench_knowledge::run(&config.knowledge_dir, &knowledge),
        },
    }
}

async fn telegram(config: &Config, command: TelegramCommand) -> anyhow::Result<()> {
    use teloxide::{payloads::SetWebhookSetters, prelude::Requester};
    let settings = config.telegram.as_ref().context("SUPPORT_BOT_TOKEN is not set")?;
    let bot = concierge_worker::telegram::Telegram::new(settings)?.bot;
    match command {
        TelegramCommand::SetWebhook { url, drop_pending } => {
            let secret = config.webhook_secret.as_ref().map(|s| s.expose().to_owned()).context(
                "CONCIERGE_WEBHOOK_SECRET is not set; the API refuses updates without it (generate one, e.g. `openssl rand -hex 32`)",
            )?;
            let parsed: reqwest::Url = url.parse().with_context(|| format!("--url {url:?} is not a URL"))?;
            if parsed.scheme() != "https" {
                anyhow::bail!("Telegram only calls HTTPS webhooks; --url must start with https://");
            }
            bot.set_webhook(parsed)
                .secret_token(secret)
                // One delivery at a time: updates are stored, hence handled, in Telegram's order.
                .max_connections(1)
                .allowed_updates(concierge_worker::telegram::poller::allowed_updates())
                .drop_pending_updates(drop_pending)
                .await?;
            println!("webhook set: {url}");
        }
        TelegramCommand::DeleteWebhook => {
            bot.delete_webhook().await?;
            println!("webhook removed");
        }
        TelegramCommand::Info => {
            let me = bot.get_me().await?;
            let info = bot.get_webhook_info().await?;
            println!("bot: @{} ({})", me.username(), me.id);
            println!("{}", serde_json::to_string_pretty(&info)?);
        }
    }
    Ok(())
}

async fn reindex(config: &Config, url: &str) -> anyhow::Result<()> {
    let pool = concierge_shared::db::connect(url, 2).await?;
    concierge_shared::db::migrate(&pool).await?;
    let mut report = concierge_shared::knowledge::store::reindex(&pool, &config.knowledge_dir).await?;
    if let Some(embeddings) = &config.embeddings {
        let embedder = concierge_shared::embeddings::Embedder::new(embeddings);
        let embedded = concierge_shared::knowledge::embed::sync(&pool, &embedder).await?;
        report.version = report.version.max(embedded.version);
        report.embedded = Some(embedded);
    }
    println!("{}", serde_json::to_string_pretty(&report)?);
    if !report.errors.is_empty() {
        eprintln!("{} broken document(s) were skipped", report.errors.len());
    }
    Ok(())
}

async fn run_all(mut config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    // Refused before anything starts: the demo hands out tokens to whoever reaches it.
    let serve_demo = config.demo_mode()?;
    let database = Database::open(&config).await?;
    config.jwt_secret = Some(concierge::jwt_secret(&config)?.into());
    let demo = if serve_demo {
        let data = concierge::demo_platform::DemoData::load(&config.fixtures_dir.join("demo_platform.json"))?;
        let (url, token) = concierge::demo_platform::serve(data.clone(), shutdown.clone()).await?;
        tracing::info!(%url, "no CONCIERGE_PLATFORM_URL: actions read the demo platform");
        config.platform_url = Some(url);
        config.platform_token = Some(token.into());
        Some(data)
    } else {
        None
    };
    let secret = config.jwt_secret.as_ref().map(|s| s.expose().to_owned()).unwrap_or_default();
    let users = match &demo {
        Some(data) => concierge::demo_site::users(data, &secret)?,
        None => Vec::new(),
    };
    let site = if demo.is_some() { concierge::demo_site::router(users.clone()) } else { axum::Router::new() };
    let listener = TcpListener::bind(config.bind).await.with_context(|| format!("cannot listen on {}", config.bind))?;
    let system = match System::start_with(config, &database.url, listener, shutdown.clone(), site).await {
        Ok(system) => system,
        Err(error) => {
            shutdown.cancel();
            database.close().await?;
            return Err(error);
        }
    };
    let url = format!("http://{}", system.addr);
    tracing::info!("Concierge is up: {url}/api/concierge/ (health: {url}/healthz)");
    if demo.is_some() {
        println!("\nConcierge is running. Open the demo site: {url}/");
    } else {
        println!("\nConcierge is running at {url}/api/concierge/");
    }
    println!("  admin console: {url}/admin/    API description: {url}/api/concierge/openapi.json\n  stop: Ctrl-C\n");
    if !users.is_empty() {
        println!("Demo users of the demo platform (tokens valid 30 days; the console takes admin's):");
        for user in &users {
            println!(
                "  {:<6} {}\n         {}",
                user["sub"].as_str().unwrap_or(""),
                user["about"].as_str().unwrap_or(""),
                user["token"].as_str().unwrap_or("")
            );
        }
        println!();
    }
    let result = system.wait().await;
    database.close().await?;
    result
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn compare_takes_two_prompts_folders_and_no_prompts_dir() {
        use clap::Parser;
        let parse = |args: &[&str]| Cli::try_parse_from([&["concierge", "eval", "decisions"][..], args].concat());
        let cli = parse(&["--compare", "prompts-a", "prompts-b", "--no-record"]).unwrap();
        let Some(super::Command::Eval(super::EvalCommand::Decisions(args))) = cli.command else {
            panic!("not eval decisions");
        };
        assert_eq!(args.compare, Some(vec!["prompts-a".into(), "prompts-b".into()]));
        assert!(args.no_record);
        assert!(parse(&["--compare", "prompts-a"]).is_err());
        assert!(parse(&["--compare", "a", "b", "--prompts-dir", "c"]).is_err());
    }

    /// README.md's configuration table and `concierge --help` name the same variables.
    #[test]
    fn the_readme_table_matches_help() {
        let help = Cli::command().render_long_help().to_string();
        let mut in_help: Vec<&str> =
            help.split("[env: ").skip(1).map(|rest| rest.split(['=', ']']).next().unwrap_or_default()).collect();
        in_help.sort();
        in_help.dedup();

        let readme = include_str!("../README.md");
        let table = &readme[readme.find("\n## Configuration").expect("a Configuration section")..];
        let table = &table[..table[1..].find("\n## ").map_or(table.len(), |end| end + 1)];
        let mut in_readme: Vec<&str> = table
            .lines()
            .filter_map(|line| line.strip_prefix("| "))
            .filter_map(|row| row.split(" | ").next())
            .flat_map(|cell| cell.split('`').skip(1).step_by(2))
            .collect();
        in_readme.sort();
        in_readme.dedup();
        assert!(in_readme.len() > 30, "{in_readme:?}");

        for name in &in_readme {
            assert!(help.contains(name), "README.md lists {name}, `concierge --help` does not");
        }
        for name in &in_help {
            assert!(in_readme.contains(name), "`concierge --help` reads {name}, README.md's table does not list it");
        }
    }
}
