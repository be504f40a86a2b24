//! `concierge eval`: answer quality on labelled sets. `retrieval` ranks documents for
//! questions ([`retrieval`]); `decisions` runs whole conversations through the configured
//! engine.

mod retrieval;

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use serde::Deserialize;

pub use retrieval::{RetrievalArgs, print_retrieval, retrieval};

/// A private PostgreSQL cluster with an empty, migrated database, for one evaluation run.
pub(crate) struct Scratch {
    pub pool: sqlx::PgPool,
    cluster: concierge_shared::pg::Cluster,
    dir: PathBuf,
}

impl Scratch {
    pub async fn start() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("concierge-eval-{}", std::process::id()));
        let options = concierge_shared::pg::ClusterOptions { data_dir: dir.clone(), ephemeral: true };
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

#[derive(Debug, Args)]
pub struct DecisionArgs {
    /// The labelled conversations.
    #[arg(long, default_value = "fixtures/eval/decisions.jsonl")]
    pub file: PathBuf,
    /// A prompts folder to evaluate instead of the configured one (A/B testing of prompts).
    #[arg(long)]
    pub prompts_dir: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
struct DecisionCase {
    id: String,
    turns: Vec<Turn>,
    expected: String,
    #[serde(default)]
    docs: Vec<String>,
    #[serde(default)]
    action: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Turn {
    role: concierge_shared::MessageRole,
    content: String,
    /// For assistant turns: the decision they were (`clarify` counts towards the limit).
    #[serde(default)]
    decision: Option<concierge_shared::DecisionKind>,
}

/// The figures of one decision evaluation.
#[derive(Debug, Default)]
pub struct DecisionFigures {
    pub engine: String,
    pub cases: usize,
    pub accuracy: f64,
    /// expected label → (right, total).
    pub by_label: std::collections::BTreeMap<String, (usize, usize)>,
    /// Of the answers to questions labelled `answer`, the share citing a right document.
    pub citation_accuracy: f64,
    /// Of the questions labelled `action`, the share running the right action.
    pub action_accuracy: f64,
    /// With a model: the mean prompt tokens one decision sent (repairs included), as the
    /// server counted them.
    pub prompt_tokens: Option<f64>,
    /// The mean wall-clock seconds of one decision.
    pub seconds_per_decision: f64,
    /// With a model: why the offline engine decided instead (`ungrounded`, `timeout`...) → how
    /// often.
    pub fallbacks: std::collections::BTreeMap<String, usize>,
    /// With a model: replies refused by the checks of what they say → how often (a reply
    /// repaired afterwards counts too).
    pub rejections: std::collections::BTreeMap<String, usize>,
    pub misses: Vec<String>,
}

/// Run every labelled conversation through the configured engine on a private database.
pub async fn decisions(
    config: &concierge_shared::config::Config,
    args: &DecisionArgs,
) -> anyhow::Result<DecisionFigures> {
    use concierge_shared::{
        DecisionKind, MessageRole, OwnerKey, Role,
        db::{conversations, messages},
        message_meta::{DecisionInfo, MessageMeta},
    };

    let cases: Vec<DecisionCase> = read_jsonl(&args.file)?;
    let scratch = Scratch::start().await?;
    let pool = scratch.pool.clone();
    let result = async {
        concierge_shared::knowledge::store::reindex(&pool, &config.knowledge_dir).await?;
        concierge_shared::actions::load_fixtures(&pool, &config.fixtures_dir.join("initial_actions.json")).await?;
        let embedder = retrieval::embedder(config);
        if let Some(embedder) = &embedder {
            concierge_shared::knowledge::embed::sync(&pool, embedder).await?;
        }
        let kb = concierge_shared::knowledge::KnowledgeBase::load(pool.clone(), embedder).await?;
        let mut ai = config.ai.clone();
        if let Some(dir) = &args.prompts_dir {
            ai.prompts_dir = dir.clone();
        }
        let llm = concierge_worker::llm::Llm::from_config(&ai)?;
        let available = concierge_shared::actions::available(&pool, true).await?;

        let mut figures = DecisionFigures {
            engine: match &llm {
                Some(llm) => format!("{} {} ({})", llm.provider, llm.client.model(), llm.prompt.version),
                None => "offline".into(),
            },
            ..Default::default()
        };
        let (mut right, mut cited, mut answers, mut actions_right, mut actions) = (0, 0, 0, 0, 0);
        let mut deciding = std::time::Duration::ZERO;
        for case in &cases {
            let owner = OwnerKey::user("eval-user");
            let conversation = conversations::create(
                &pool,
                conversations::NewConversation {
                    owner: &owner,
                    owner_name: Some("Eval"),
                    owner_email: None,
                    owner_role: Role::User,
                    page_url: None,
                    page_title: None,
                },
            )
            .await?;
            let mut stored = Vec::new();
            let mut tx = pool.begin().await?;
            let mut clarifications = 0;
            for turn in &case.turns {
                let mut new = messages::NewMessage::new(turn.role, turn.content.clone());
                // Only the kind of an earlier turn matters to the decision; it reads as the
                // offline engine's.
                let info = DecisionInfo::offline(None);
                match turn.decision {
                    Some(DecisionKind::Clarify) => {
                        new = new.with_metadata(MessageMeta::clarify(info, Vec::new()));
                        clarifications += 1;
                    }
                    Some(DecisionKind::Answer) => new = new.with_metadata(MessageMeta::answer(info, Vec::new())),
                    Some(other) => anyhow::bail!("{}: a turn cannot be stored as a past {other}", case.id),
                    None => {}
                }
                let message = messages::append(&mut tx, conversation.id, new).await?.context("appending a turn")?;
                stored.push(message);
            }
            sqlx::query("UPDATE conversations SET clarify_count = $2 WHERE id = $1")
                .bind(conversation.id)
                .bind(clarifications)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            let conversation = conversations::get(&pool, conversation.id).await?.context("the case's conversation")?;
            let message = stored.pop().context("a case without turns")?;
            anyhow::ensure!(message.role == MessageRole::User, "{}: the last turn must be the user's", case.id);
            let query = concierge_worker::engine::query_with_context(&stored, &message.content);
            let found = kb
                .search(&query, &concierge_shared::knowledge::SearchOptions::top(concierge_worker::engine::SEARCHED))
                .await
                .result;
            let started = std::time::Instant::now();
            let decision = match &llm {
                Some(llm) => {
                    let turn = concierge_worker::llm::Turn {
                        conversation: &conversation,
                        history: &stored,
                        message: &message,
                        found: &found,
                        actions: &available,
                        plan: None,
                    };
                    let (decision, info) = concierge_worker::llm::decide(llm, &pool, &turn, &mut |_| {}).await?;
                    if let Some(fallback) = info.fallback {
                        *figures.fallbacks.entry(fallback).or_default() += 1;
                    }
                    decision
                }
                None => concierge_worker::engine::decide(&found, &conversation, &message, &available),
            };
            deciding += started.elapsed();
            let kind = decision.kind().as_str();
            let entry = figures.by_label.entry(case.expected.clone()).or_default();
            entry.1 += 1;
            let correct_kind = kind == case.expected;
            if correct_kind {
                right += 1;
                entry.0 += 1;
            }
            let detail = match &decision {
                concierge_worker::engine::Decision::Answer { sources, .. } => {
                    let paths: Vec<&str> = sources.iter().map(|s| s.path.as_str()).collect();
                    if case.expected == "answer" {
                        answers += 1;
                        if paths.iter().any(|p| case.docs.iter().any(|d| d == p)) {
                            cited += 1;
                        } else {
                            figures.misses.push(format!(
                                "{} cites {paths:?}, want {:?}: {:?}",
                                case.id, case.docs, message.content
                            ));
                        }
                    }
                    format!("{paths:?}")
                }
                concierge_worker::engine::Decision::Action { name, .. } => {
                    if case.expected == "action" {
                        actions += 1;
                        if Some(name) == case.action.as_ref() {
                            actions_right += 1;
                        }
                    }
                    name.clone()
                }
                _ => String::new(),
            };
            if case.expected == "action" && kind != "action" {
                actions += 1;
            }
            if !correct_kind {
                figures
                    .misses
                    .push(format!("{}: {} {detail}, want {}: {:?}", case.id, kind, case.expected, message.content));
            }
        }
        figures.cases = cases.len();
        figures.accuracy = right as f64 / cases.len().max(1) as f64;
        figures.citation_accuracy = cited as f64 / answers.max(1) as f64;
        figures.action_accuracy = actions_right as f64 / actions.max(1) as f64;
        figures.seconds_per_decision = deciding.as_secs_f64() / cases.len().max(1) as f64;
        if llm.is_some() {
            let tokens: i64 = sqlx::query_scalar(
                "SELECT COALESCE(sum(prompt_tokens), 0)::bigint FROM llm_calls WHERE purpose IN ('decide', 'repair')",
            )
            .fetch_one(&pool)
            .await?;
            figures.prompt_tokens = Some(tokens as f64 / cases.len().max(1) as f64);
            for (check, pattern) in [
                ("ungrounded", "the answer states facts%"),
                ("clarify_restates", "the clarifying question only repeats%"),
                ("clarify_covered", "passage p1 covers the question%"),
            ] {
                let count: i64 = sqlx::query_scalar("SELECT count(*) FROM llm_calls WHERE error LIKE $1")
                    .bind(pattern)
                    .fetch_one(&pool)
                    .await?;
                figures.rejections.insert(check.into(), count as usize);
            }
        }
        anyhow::Ok(figures)
    }
    .await;
    scratch.stop().await?;
    result
}

pub fn print_decisions(figures: &DecisionFigures) {
    println!("engine            {}", figures.engine);
    println!("conversations     {}", figures.cases);
    println!("decision accuracy {:.3}", figures.accuracy);
    for (label, (right, total)) in &figures.by_label {
        println!("  {label:<9} {right}/{total}");
    }
    println!(
        "citation accuracy {:.3}   (answers to answer-labelled questions citing a right document)",
        figures.citation_accuracy
    );
    println!("action accuracy   {:.3}   (action-labelled questions running the right action)", figures.action_accuracy);
    if let Some(tokens) = figures.prompt_tokens {
        println!("prompt tokens     {tokens:.0}   (mean per decision, repairs included, as the server counted)");
    }
    println!("seconds/decision  {:.2}", figures.seconds_per_decision);
    if !figures.rejections.is_empty() {
        let listed: Vec<String> = figures.rejections.iter().map(|(check, n)| format!("{check} {n}")).collect();
        println!("replies rejected  {}", listed.join(", "));
        let fallen: usize = figures.fallbacks.values().sum();
        let listed: Vec<String> = figures.fallbacks.iter().map(|(why, n)| format!("{why} {n}")).collect();
        println!(
            "fallback rate     {:.3}   ({})",
            fallen as f64 / figures.cases.max(1) as f64,
            if listed.is_empty() { "none".to_owned() } else { listed.join(", ") }
        );
    }
    if !figures.misses.is_empty() {
        println!("\nmisses ({}):", figures.misses.len());
        for miss in &figures.misses {
            println!("  {miss}");
        }
    }
}
