//! `concierge eval`: answer quality on labelled sets. `retrieval` ranks documents for
//! questions ([`retrieval`]); `decisions` runs whole conversations through the configured
//! engine ([`decisions`]), or through two prompt versions side by side ([`compare`]); every
//! decision run is recorded in the configured database ([`record`]) for the console.
//!
//! Invariant: an evaluation never writes to the configured database but for its record; the
//! conversations it decides live in a private scratch cluster that is removed afterwards.

pub mod compare;
mod decisions;
mod record;
mod retrieval;

use std::path::PathBuf;

use anyhow::Context;

pub use compare::{Comparison, Difference, compare, mcnemar_exact, render_comparison};
pub use decisions::{CaseOutcome, DecisionArgs, DecisionFigures, DecisionRun, EngineInfo, decisions, print_decisions};
pub use record::{record_comparison, record_run};
pub use retrieval::{RetrievalArgs, print_retrieval, retrieval};

/// `concierge eval decisions`: run (or compare), print the report, then record it unless
/// `--no-record`. A record that cannot be written is a warning: the report stands.
pub async fn decisions_command(config: &concierge_shared::config::Config, args: &DecisionArgs) -> anyhow::Result<()> {
    match args.compare.as_deref() {
        Some([a, b]) => {
            let comparison = compare(config, &args.file, a, b).await?;
            print!("{}", render_comparison(&comparison));
            if !args.no_record {
                warn_unrecorded(record_comparison(config, &comparison).await);
            }
        }
        Some(other) => anyhow::bail!("--compare takes two prompts folders, got {}", other.len()),
        None => {
            let run = decisions(config, args).await?;
            print_decisions(&run.figures);
            if !args.no_record {
                warn_unrecorded(record_run(config, &run).await);
            }
        }
    }
    Ok(())
}

fn warn_unrecorded(recorded: anyhow::Result<String>) {
    match recorded {
        Ok(what) => println!("\nrecorded as {what}"),
        Err(error) => eprintln!("\nwarning: the run is not recorded ({error:#}); the report above stands"),
    }
}

/// A private PostgreSQL cluster with an empty, migrated database, for one evaluation run.
pub(crate) struct Scratch {
    pub pool: sqlx::PgPool,
    cluster: concierge_shared::pg::Cluster,
    dir: PathBuf,
}

impl Scratch {
    pub async fn start() -> anyhow::Result<Self> {
        // Unique per run, so that evaluations running side by side in one process never meet.
        let dir = std::env::temp_dir().join(format!(
            "concierge-eval-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let options =
            concierge_shared::pg::ClusterOptions { data_dir: dir.clone(), ephemeral: true, statements: false };
        let cluster = tokio::task::spawn_blocking(move || concierge_shared::pg::Cluster::start(&options)).await??;
        crate::create_database(&cluster.url("postgres"), "eval").await?;
        let pool = concierge_shared::db::connect(&cluster.url("eval"), 4).await?;
        concierge_shared::db::migrate(&pool).await?;
        Ok(Self { pool, cluster, dir })
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        self.pool.close().await;
        let cluster = self.cluster;
        tokio::task::spawn_blocking(move || cluster.stop()).await??;
        let _ = std::fs::remove_dir_all(&self.dir);
        Ok(())
    }
}

/// The non-blank lines of a JSON Lines file, parsed.
pub(crate) fn read_jsonl<T: serde::de::DeserializeOwned>(file: &std::path::Path) -> anyhow::Result<Vec<T>> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| serde_json::from_str(l).with_context(|| format!("{}:{}: not a case", file.display(), n + 1)))
        .collect()
}
