//! `concierge eval decisions`: labelled conversations through an engine (the offline one, or a
//! model with one prompt version) on a private database, scored by decision kind, citations and
//! actions. [`super::compare`] runs two engines over the same conversations with the same parts.

use std::{path::PathBuf, sync::Arc};

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Args;
use concierge_shared::{
    DecisionKind, MessageRole, OwnerKey, Role,
    actions::ActionDefinition,
    config::{AiConfig, Config, Provider},
    db::{conversations, messages},
    knowledge::KnowledgeBase,
    message_meta::{DecisionInfo, MessageMeta},
};
use concierge_worker::{engine::Decision, llm::Llm};
use serde::{Deserialize, Serialize};

use super::{Scratch, read_jsonl, retrieval};

#[derive(Debug, Args)]
pub struct DecisionArgs {
    /// The labelled conversations.
    #[arg(long, default_value = "fixtures/eval/decisions.jsonl")]
    pub file: PathBuf,
    /// A prompts folder to evaluate instead of the configured one (A/B testing of prompts).
    #[arg(long)]
    pub prompts_dir: Option<PathBuf>,
    /// Two prompts folders to compare on the same conversations: accuracy side by side, the
    /// conversations where they differ, and McNemar's exact test.
    #[arg(long, num_args = 2, value_names = ["DIR_A", "DIR_B"], conflicts_with = "prompts_dir")]
    pub compare: Option<Vec<PathBuf>>,
    /// Do not record the run in the database (DATABASE_URL, else the private cluster).
    #[arg(long)]
    pub no_record: bool,
}

#[derive(Debug, Deserialize)]
pub(super) struct DecisionCase {
    pub id: String,
    turns: Vec<Turn>,
    pub expected: String,
    #[serde(default)]
    docs: Vec<String>,
    #[serde(default)]
    action: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Turn {
    role: MessageRole,
    content: String,
    /// For assistant turns: the decision they were (`clarify` counts towards the limit).
    #[serde(default)]
    decision: Option<DecisionKind>,
}

/// The figures of one decision evaluation.
#[derive(Debug, Default, Serialize)]
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

/// What one decision cost, and what the model's replies met on the way.
#[derive(Debug, Default)]
pub(super) struct Cost {
    pub elapsed: std::time::Duration,
    /// Prompt tokens of the conversation's calls, as the server counted them.
    pub prompt_tokens: i64,
    /// Why the offline engine decided instead, if it did.
    pub fallback: Option<String>,
    /// The checks of what a reply says that refused one, once per refusal.
    pub rejections: Vec<&'static str>,
}

/// The checks of what a reply says, by the start of the reason they give.
const CHECKS: [(&str, &str); 6] = [
    ("ungrounded", "the answer states facts%"),
    ("clarify_restates", "the clarifying question only repeats%"),
    ("clarify_covered", "passage p1 covers the question%"),
    ("clarify_again", "a clarifying question is not one of the choices%"),
    ("skips_action", "the user asks about their own account%"),
    ("needs_person", "this needs a person%"),
];

/// What decided, as recorded with the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EngineInfo {
    /// `offline`, or the model's provider.
    pub engine: String,
    pub model: Option<String>,
    pub prompt_version: Option<String>,
    pub prompts_dir: Option<String>,
    /// How the model is asked for its decision; `None` for the offline engine.
    pub decision_format: Option<String>,
}

impl EngineInfo {
    /// `openai gpt-4o-mini (system.md@0123456789)`, or `offline`.
    pub fn label(&self) -> String {
        match (&self.model, &self.prompt_version) {
            (Some(model), Some(version)) => format!("{} {model} ({version})", self.engine),
            _ => self.engine.clone(),
        }
    }
}

/// One conversation's decision, scored.
#[derive(Debug, Clone, Serialize)]
pub struct CaseOutcome {
    pub id: String,
    pub expected: String,
    /// The decision's kind, with the action's name for an action (`action:check_zoom`).
    pub decided: String,
    /// Whether the kind is the expected one (what the accuracy counts).
    pub right: bool,
}

/// One engine's whole run.
#[derive(Debug)]
pub struct DecisionRun {
    pub file: PathBuf,
    pub engine: EngineInfo,
    pub figures: DecisionFigures,
    /// In the set's order.
    pub outcomes: Vec<CaseOutcome>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

/// The offline engine, or a model with one prompt version.
pub(super) struct Engine {
    llm: Option<Arc<Llm>>,
    pub info: EngineInfo,
}

impl Engine {
    /// The configured engine, with its prompt read from `prompts_dir` when given.
    pub fn new(ai: &AiConfig, prompts_dir: Option<&std::path::Path>) -> anyhow::Result<Self> {
        let mut ai = ai.clone();
        if let Some(dir) = prompts_dir {
            ai.prompts_dir = dir.to_owned();
        }
        let llm = Llm::from_config(&ai)?;
        let info = match &llm {
            Some(llm) => EngineInfo {
                engine: llm.provider.to_owned(),
                model: Some(llm.client.model().to_owned()),
                prompt_version: Some(llm.prompt.version.clone()),
                prompts_dir: Some(ai.prompts_dir.display().to_string()),
                decision_format: decision_format(&ai),
            },
            None => EngineInfo { engine: "offline".into(), ..Default::default() },
        };
        Ok(Self { llm, info })
    }

    pub fn reads_prompts(&self) -> bool {
        self.llm.is_some()
    }
}

/// How a model is asked for its decision.
fn decision_format(ai: &AiConfig) -> Option<String> {
    (ai.provider != Provider::Offline).then(|| ai.decision_format.as_str().to_owned())
}

/// A private database holding the knowledge base and the actions, which every decision of a
/// run reads.
pub(super) struct Bench {
    pool: sqlx::PgPool,
    kb: std::sync::Arc<KnowledgeBase>,
    available: Vec<ActionDefinition>,
}

/// Run `work` on a fresh [`Bench`], then remove it.
pub(super) async fn with_bench<T>(
    config: &Config,
    work: impl AsyncFnOnce(&Bench) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let scratch = Scratch::start().await?;
    let pool = scratch.pool.clone();
    let result = async {
        concierge_shared::knowledge::store::reindex(&pool, &config.knowledge_dir).await?;
        concierge_shared::actions::load_fixtures(&pool, &config.fixtures_dir.join("initial_actions.json")).await?;
        let embedder = retrieval::embedder(config);
        if let Some(embedder) = &embedder {
            concierge_shared::knowledge::embed::sync(&pool, embedder).await?;
        }
        let kb = KnowledgeBase::load(pool.clone(), embedder).await?;
        let available = concierge_shared::actions::available(&pool, true).await?;
        let bench = Bench { pool: pool.clone(), kb, available };
        work(&bench).await
    }
    .await;
    scratch.stop().await?;
    result
}

/// Store the case's conversation afresh and decide its last message. Every engine gets its own
/// copy, so that what one engine's calls leave behind (token use) never reaches another's.
pub(super) async fn decide(
    bench: &Bench,
    engine: &Engine,
    case: &DecisionCase,
) -> anyhow::Result<(Decision, String, Cost)> {
    let pool = &bench.pool;
    let owner = OwnerKey::user("eval-user");
    let conversation = conversations::create(
        pool,
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
        // Only the kind of an earlier turn matters to the decision; it reads as the offline
        // engine's.
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
    let conversation = conversations::get(pool, conversation.id).await?.context("the case's conversation")?;
    let message = stored.pop().context("a case without turns")?;
    anyhow::ensure!(message.role == MessageRole::User, "{}: the last turn must be the user's", case.id);
    let query = concierge_worker::engine::query_with_context(&stored, &message.content);
    let found = bench
        .kb
        .search(&query, &concierge_shared::knowledge::SearchOptions::top(concierge_worker::engine::SEARCHED))
        .await
        .result;
    let started = std::time::Instant::now();
    let mut cost = Cost::default();
    let decision = match &engine.llm {
        Some(llm) => {
            let turn = concierge_worker::llm::Turn {
                conversation: &conversation,
                history: &stored,
                message: &message,
                found: &found,
                actions: &bench.available,
                plan: None,
                images: &[],
            };
            let (decision, info) = concierge_worker::llm::decide(llm, pool, &turn, &mut |_| {}).await?;
            cost.fallback = info.fallback;
            decision
        }
        None => concierge_worker::engine::decide(&found, &conversation, &message, &bench.available),
    };
    cost.elapsed = started.elapsed();
    if engine.llm.is_some() {
        cost.prompt_tokens = sqlx::query_scalar(
            "SELECT COALESCE(sum(prompt_tokens), 0)::bigint FROM llm_calls
             WHERE conversation_id = $1 AND purpose IN ('decide', 'repair')",
        )
        .bind(conversation.id)
        .fetch_one(pool)
        .await?;
        for (check, pattern) in CHECKS {
            let count: i64 =
                sqlx::query_scalar("SELECT count(*) FROM llm_calls WHERE conversation_id = $1 AND error LIKE $2")
                    .bind(conversation.id)
                    .bind(pattern)
                    .fetch_one(pool)
                    .await?;
            cost.rejections.extend(std::iter::repeat_n(check, count as usize));
        }
    }
    Ok((decision, message.content, cost))
}

/// The running counts of one engine's run.
#[derive(Default)]
pub(super) struct Tally {
    figures: DecisionFigures,
    outcomes: Vec<CaseOutcome>,
    right: usize,
    cited: usize,
    answers: usize,
    actions_right: usize,
    actions: usize,
    deciding: std::time::Duration,
    prompt_tokens: i64,
}

impl Tally {
    pub fn add(&mut self, case: &DecisionCase, decision: &Decision, message: &str, cost: Cost) {
        self.deciding += cost.elapsed;
        self.prompt_tokens += cost.prompt_tokens;
        if let Some(fallback) = cost.fallback {
            *self.figures.fallbacks.entry(fallback).or_default() += 1;
        }
        for check in cost.rejections {
            *self.figures.rejections.entry(check.to_owned()).or_default() += 1;
        }
        let kind = decision.kind().as_str();
        let entry = self.figures.by_label.entry(case.expected.clone()).or_default();
        entry.1 += 1;
        let correct_kind = kind == case.expected;
        if correct_kind {
            self.right += 1;
            entry.0 += 1;
        }
        let detail = match decision {
            Decision::Answer { sources, .. } => {
                let paths: Vec<&str> = sources.iter().map(|s| s.path.as_str()).collect();
                if case.expected == "answer" {
                    self.answers += 1;
                    if paths.iter().any(|p| case.docs.iter().any(|d| d == p)) {
                        self.cited += 1;
                    } else {
                        self.figures
                            .misses
                            .push(format!("{} cites {paths:?}, want {:?}: {message:?}", case.id, case.docs));
                    }
                }
                format!("{paths:?}")
            }
            Decision::Action { name, .. } => {
                if case.expected == "action" {
                    self.actions += 1;
                    if Some(name) == case.action.as_ref() {
                        self.actions_right += 1;
                    } else {
                        self.figures.misses.push(format!(
                            "{} runs {name}, want {}: {message:?}",
                            case.id,
                            case.action.as_deref().unwrap_or("-")
                        ));
                    }
                }
                name.clone()
            }
            _ => String::new(),
        };
        if case.expected == "action" && kind != "action" {
            self.actions += 1;
        }
        if !correct_kind {
            self.figures.misses.push(format!("{}: {kind} {detail}, want {}: {message:?}", case.id, case.expected));
        }
        let decided = match decision {
            Decision::Action { name, .. } => format!("{kind}:{name}"),
            _ => kind.to_owned(),
        };
        self.outcomes.push(CaseOutcome {
            id: case.id.clone(),
            expected: case.expected.clone(),
            decided,
            right: correct_kind,
        });
    }

    pub fn finish(self, engine: &EngineInfo) -> (DecisionFigures, Vec<CaseOutcome>) {
        let cases = self.outcomes.len();
        let figures = DecisionFigures {
            engine: engine.label(),
            cases,
            accuracy: self.right as f64 / cases.max(1) as f64,
            citation_accuracy: self.cited as f64 / self.answers.max(1) as f64,
            action_accuracy: self.actions_right as f64 / self.actions.max(1) as f64,
            prompt_tokens: engine.model.is_some().then(|| self.prompt_tokens as f64 / cases.max(1) as f64),
            seconds_per_decision: self.deciding.as_secs_f64() / cases.max(1) as f64,
            ..self.figures
        };
        (figures, self.outcomes)
    }
}

/// Run every labelled conversation through the configured engine on a private database.
pub async fn decisions(config: &Config, args: &DecisionArgs) -> anyhow::Result<DecisionRun> {
    let cases: Vec<DecisionCase> = read_jsonl(&args.file)?;
    let engine = Engine::new(&config.ai, args.prompts_dir.as_deref())?;
    let started_at = Utc::now();
    let tally = with_bench(config, async |bench| {
        let mut tally = Tally::default();
        for case in &cases {
            let (decision, message, cost) = decide(bench, &engine, case).await?;
            tally.add(case, &decision, &message, cost);
        }
        anyhow::Ok(tally)
    })
    .await?;
    let (figures, outcomes) = tally.finish(&engine.info);
    Ok(DecisionRun {
        file: args.file.clone(),
        engine: engine.info,
        figures,
        outcomes,
        started_at,
        finished_at: Utc::now(),
    })
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
    if figures.prompt_tokens.is_some() {
        let listed: Vec<String> = CHECKS
            .iter()
            .map(|(check, _)| format!("{check} {}", figures.rejections.get(*check).copied().unwrap_or(0)))
            .collect();
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
