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
use concierge_shared::knowledge::{KnowledgeIndex, load_dir};
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
        let result = index.search(&case.q, 30);
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
