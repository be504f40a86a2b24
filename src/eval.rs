//! `concierge eval retrieval`: how well the knowledge search finds the document that answers a
//! question, on the labelled set in `fixtures/eval/retrieval.jsonl`.
//!
//! Each line is `{"q": "...", "docs": ["faq/....md", ...]}`; an empty `docs` marks a question the
//! knowledge base does not answer. Ranking is by distinct document. The figures:
//! recall@1 and recall@5 (an expected document ranks first / in the top five), MRR@10, the
//! share of in-scope questions the engine would answer (its coverage threshold passed, and the
//! right document first), and the out-of-scope rejection rate (the threshold not passed).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use concierge_shared::knowledge::{KnowledgeIndex, load_dir, normalize_query};
use concierge_worker::engine;
use serde::Deserialize;

#[derive(Debug, Args)]
pub struct RetrievalArgs {
    /// The labelled questions.
    #[arg(long, default_value = "fixtures/eval/retrieval.jsonl")]
    pub file: PathBuf,
    /// Show every miss, not only the first 40.
    #[arg(long)]
    pub all_misses: bool,
}

#[derive(Debug, Deserialize)]
struct Case {
    q: String,
    docs: Vec<String>,
}

/// The figures of one evaluation run.
#[derive(Debug, Default)]
pub struct RetrievalFigures {
    pub in_scope: usize,
    pub out_of_scope: usize,
    pub recall_at_1: f64,
    pub recall_at_5: f64,
    pub mrr_at_10: f64,
    pub answered_correctly: f64,
    pub rejection: f64,
    pub misses: Vec<String>,
}

pub fn retrieval(knowledge_dir: &Path, file: &Path) -> anyhow::Result<RetrievalFigures> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let cases: Vec<Case> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| serde_json::from_str(l).with_context(|| format!("{}:{}: not a case", file.display(), n + 1)))
        .collect::<anyhow::Result<_>>()?;
    let (documents, errors) = load_dir(knowledge_dir)?;
    if let Some(error) = errors.first() {
        anyhow::bail!("{error}");
    }
    let known: std::collections::HashSet<&str> = documents.iter().map(|d| d.path.as_str()).collect();
    for case in &cases {
        for doc in &case.docs {
            anyhow::ensure!(
                known.contains(doc.as_str()),
                "{:?} names {doc}, which is not in the knowledge base",
                case.q
            );
        }
    }
    let index = KnowledgeIndex::build(&documents)?;

    let mut figures = RetrievalFigures::default();
    let (mut hits1, mut hits5, mut rr, mut answered, mut rejected) = (0usize, 0usize, 0f64, 0usize, 0usize);
    for case in &cases {
        let result = index.search(&normalize_query(&case.q), 30);
        let mut ranked: Vec<&str> = Vec::new();
        for hit in &result.hits {
            if !ranked.contains(&hit.chunk.doc_path.as_str()) {
                ranked.push(&hit.chunk.doc_path);
            }
        }
        let confident = engine::confident(&result);
        let top = result
            .hits
            .first()
            .map_or(String::from("nothing"), |h| format!("{} ({:.2})", h.chunk.doc_path, h.coverage));
        if case.docs.is_empty() {
            figures.out_of_scope += 1;
            if confident.is_none() {
                rejected += 1;
            } else {
                figures.misses.push(format!("out of scope, answered: {:?} → {top}", case.q));
            }
            continue;
        }
        figures.in_scope += 1;
        let rank = ranked.iter().take(10).position(|d| case.docs.iter().any(|e| e == d)).map(|p| p + 1);
        if rank == Some(1) {
            hits1 += 1;
        }
        if rank.is_some_and(|r| r <= 5) {
            hits5 += 1;
        }
        if let Some(r) = rank {
            rr += 1.0 / r as f64;
        }
        let correct = confident.is_some_and(|h| case.docs.contains(&h.chunk.doc_path));
        if correct {
            answered += 1;
        }
        if rank != Some(1) {
            figures.misses.push(format!("rank {rank:?}: {:?} → want {:?}, got {top}", case.q, case.docs));
        } else if !correct {
            figures.misses.push(format!("below threshold: {:?} → {top}", case.q));
        }
    }
    let n = figures.in_scope.max(1) as f64;
    figures.recall_at_1 = hits1 as f64 / n;
    figures.recall_at_5 = hits5 as f64 / n;
    figures.mrr_at_10 = rr / n;
    figures.answered_correctly = answered as f64 / n;
    figures.rejection = rejected as f64 / figures.out_of_scope.max(1) as f64;
    Ok(figures)
}

pub fn print_retrieval(figures: &RetrievalFigures, all_misses: bool) {
    println!("questions        {} in scope, {} out of scope", figures.in_scope, figures.out_of_scope);
    println!("recall@1         {:.3}   (target ≥ 0.80)", figures.recall_at_1);
    println!("recall@5         {:.3}   (target ≥ 0.95)", figures.recall_at_5);
    println!("MRR@10           {:.3}", figures.mrr_at_10);
    println!(
        "answered right   {:.3}   (top document right and above the answer threshold)",
        figures.answered_correctly
    );
    println!("out-of-scope rejection {:.3}   (target ≥ 0.80)", figures.rejection);
    if !figures.misses.is_empty() {
        println!("\nmisses ({}):", figures.misses.len());
        let shown = if all_misses { figures.misses.len() } else { 40 };
        for miss in figures.misses.iter().take(shown) {
            println!("  {miss}");
        }
    }
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

    let text = std::fs::read_to_string(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
    let cases: Vec<DecisionCase> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| serde_json::from_str(l).with_context(|| format!("{}:{}: not a case", args.file.display(), n + 1)))
        .collect::<anyhow::Result<_>>()?;

    let dir = std::env::temp_dir().join(format!("concierge-eval-{}", std::process::id()));
    let options = concierge_shared::pg::ClusterOptions { data_dir: dir.clone(), ephemeral: true };
    let cluster = tokio::task::spawn_blocking(move || concierge_shared::pg::Cluster::start(&options)).await??;
    let result = async {
        crate::create_database(&cluster.url("postgres"), "eval").await?;
        let pool = concierge_shared::db::connect(&cluster.url("eval"), 4).await?;
        concierge_shared::db::migrate(&pool).await?;
        concierge_shared::knowledge::store::reindex(&pool, &config.knowledge_dir).await?;
        concierge_shared::actions::load_fixtures(&pool, &config.fixtures_dir.join("initial_actions.json")).await?;
        let kb = concierge_shared::knowledge::KnowledgeBase::load(pool.clone()).await?;
        let index = kb.current();
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
            let decision = match &llm {
                Some(llm) => {
                    let turn = concierge_worker::llm::Turn {
                        conversation: &conversation,
                        history: &stored,
                        message: &message,
                        kb: &index,
                        actions: &available,
                        plan: None,
                    };
                    concierge_worker::llm::decide(llm, &pool, &turn, &mut |_| {}).await?.0
                }
                None => concierge_worker::engine::decide(&index, &conversation, &stored, &message, &available),
            };
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
        pool.close().await;
        anyhow::Ok(figures)
    }
    .await;
    tokio::task::spawn_blocking(move || cluster.stop()).await??;
    let _ = std::fs::remove_dir_all(&dir);
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
    if !figures.misses.is_empty() {
        println!("\nmisses ({}):", figures.misses.len());
        for miss in &figures.misses {
            println!("  {miss}");
        }
    }
}
