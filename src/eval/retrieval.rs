//! `concierge eval retrieval`: how well the knowledge search finds the document that answers a
//! question, on any knowledge directory and labelled question set.
//!
//! Each line of the questions file is `{"q": "...", "docs": ["faq/....md", ...]}`; an empty
//! `docs` marks a question the knowledge base does not answer. The knowledge directory is
//! reindexed into a private database (and embedded, with an embeddings server configured), and
//! every question is searched in each mode side by side: lexical only, vector only, and the
//! hybrid fusions. Ranking is by distinct document. The figures: recall@1 and recall@5 (an
//! expected document ranks first / in the top five), MRR@10, the out-of-scope rejection rate
//! (the offline engine would not answer), and what the offline engine would do with the
//! in-scope questions: answer with a right document, answer with a wrong one, or ask to
//! clarify.

use std::{collections::HashMap, io::Write as _, path::PathBuf, sync::Arc, time::Instant};

use clap::Args;
use concierge_shared::{
    embeddings::Embedder,
    knowledge::{DEFAULT_FUSION, Fusion, KnowledgeBase, SearchOptions, SearchResult, store},
};
use concierge_worker::engine;
use serde::Deserialize;

use super::{Scratch, read_jsonl};

#[derive(Debug, Args)]
pub struct RetrievalArgs {
    /// The labelled questions (JSON Lines; see the README).
    #[arg(long, default_value = "fixtures/eval/retrieval.jsonl")]
    pub file: PathBuf,
    /// The knowledge directory to search. Default: CONCIERGE_KNOWLEDGE_DIR.
    #[arg(long)]
    pub kb: Option<PathBuf>,
    /// Show every miss, not only the first 40.
    #[arg(long)]
    pub all_misses: bool,
    /// Keep the vectors of passages and questions in this file (JSON Lines) and reuse them on
    /// the next run, so that measuring again does not embed again.
    #[arg(long)]
    pub vectors_cache: Option<PathBuf>,
    /// Write each question's top hit and the rank of its first answering document, by mode, to
    /// this file (JSON Lines): what the offline engine's threshold is calibrated on.
    #[arg(long)]
    pub dump: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
struct Case {
    q: String,
    docs: Vec<String>,
}

/// One way of ranking.
#[derive(Debug, Clone, Copy)]
struct Mode {
    name: &'static str,
    semantic: bool,
    fusion: Fusion,
}

const MODES: [Mode; 5] = [
    Mode { name: "lexical", semantic: false, fusion: DEFAULT_FUSION },
    Mode { name: "vector", semantic: true, fusion: Fusion::Weighted { vector_weight: 1.0 } },
    Mode { name: "rrf k=10", semantic: true, fusion: DEFAULT_FUSION },
    Mode { name: "weighted .5", semantic: true, fusion: Fusion::Weighted { vector_weight: 0.5 } },
    Mode { name: "weighted .7", semantic: true, fusion: Fusion::Weighted { vector_weight: 0.7 } },
];

/// The figures of one mode.
#[derive(Debug, Default, Clone)]
pub struct ModeFigures {
    pub name: String,
    pub recall_at_1: f64,
    pub recall_at_5: f64,
    pub mrr_at_10: f64,
    pub rejection: f64,
    /// Of the in-scope questions: the offline engine answers with a right document, with a
    /// wrong one, or asks to clarify.
    pub engine_right: f64,
    pub engine_wrong: f64,
    pub engine_clarify: f64,
    pub misses: Vec<String>,
}

/// The figures of one evaluation run, by mode.
#[derive(Debug, Default)]
pub struct RetrievalFigures {
    pub knowledge: String,
    pub questions: String,
    pub embeddings: Option<String>,
    pub documents: usize,
    pub chunks: usize,
    pub in_scope: usize,
    pub out_of_scope: usize,
    pub modes: Vec<ModeFigures>,
}

/// The embeddings client of `config`, with a query budget fit for measuring quality rather
/// than latency.
pub(super) fn embedder(config: &concierge_shared::config::Config) -> Option<Arc<Embedder>> {
    config.embeddings.as_ref().map(|embeddings| {
        let mut embeddings = embeddings.clone();
        embeddings.query_timeout = embeddings.query_timeout.max(std::time::Duration::from_secs(30));
        Arc::new(Embedder::new(&embeddings))
    })
}

pub async fn retrieval(
    config: &concierge_shared::config::Config,
    args: &RetrievalArgs,
) -> anyhow::Result<RetrievalFigures> {
    let kb_dir = args.kb.clone().unwrap_or_else(|| config.knowledge_dir.clone());
    let cases: Vec<Case> = read_jsonl(&args.file)?;
    let scratch = Scratch::start().await?;
    let pool = scratch.pool.clone();
    let result = async {
        let report = store::reindex(&pool, &kb_dir).await?;
        if let Some(error) = report.errors.first() {
            anyhow::bail!("{}: {}", error.path, error.error);
        }
        let (_, documents) = store::load(&pool).await?;
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
        let embedder = embedder(config);
        let mut figures = RetrievalFigures {
            knowledge: kb_dir.display().to_string(),
            questions: args.file.display().to_string(),
            documents: report.documents,
            chunks: report.chunks,
            ..Default::default()
        };
        let mut cache = VectorCache::default();
        if let (Some(path), Some(_)) = (&args.vectors_cache, &embedder) {
            cache = VectorCache::load(path)?;
            cache.prime(&pool).await?;
        }
        if let Some(embedder) = &embedder {
            let started = Instant::now();
            let embedded = concierge_shared::knowledge::embed::sync(&pool, embedder).await?;
            figures.embeddings = Some(format!(
                "{} ({} texts embedded in {:.1} s)",
                embedder.describe(),
                embedded.embedded,
                started.elapsed().as_secs_f64()
            ));
        }
        let kb = KnowledgeBase::load(pool.clone(), embedder).await?;
        let index = kb.current();
        let semantic = index.vectors().is_some();
        let mut dump = args.dump.as_ref().map(std::fs::File::create).transpose()?.map(std::io::BufWriter::new);

        let mut tallies: Vec<Tally> = MODES.iter().filter(|m| semantic || !m.semantic).map(|m| Tally::new(*m)).collect();
        for case in &cases {
            let query = engine::query_with_context(&[], &case.q);
            let vector = match (index.vectors(), cache.query(index.vectors(), &query)) {
                (None, _) => None,
                (Some(_), Some(cached)) => Some(cached),
                (Some(vectors), None) => {
                    let (vector, fallback) = kb.query_vector(&index, &query).await;
                    if let Some(reason) = fallback {
                        anyhow::bail!("the query {query:?} could not be embedded: {reason}");
                    }
                    let vector: Vec<f32> = vector.as_deref().unwrap_or_default().to_vec();
                    let key = (vectors.space.query_model.clone(), format!("{}{query}", vectors.space.query_prefix));
                    cache.queries.insert(key, vector.clone());
                    Some(vector)
                }
            };
            for tally in &mut tallies {
                let options = SearchOptions { limit: 30, fusion: tally.mode.fusion, per_document: 0 };
                let vector = if tally.mode.semantic { vector.as_deref() } else { None };
                let result = index.search_with(&query, vector, &options);
                if let Some(dump) = dump.as_mut() {
                    let top = result.hits.first();
                    let second =
                        result.hits.iter().skip(1).find(|h| top.is_some_and(|t| t.chunk.doc_path != h.chunk.doc_path));
                    let line = serde_json::json!({
                        "q": case.q, "docs": case.docs, "mode": tally.mode.name, "rank": document_rank(case, &result),
                        "top": top.map(|h| &h.chunk.doc_path), "coverage": top.map(|h| h.coverage),
                        "lexical_rank": top.and_then(|h| h.lexical_rank), "vector_rank": top.and_then(|h| h.vector_rank),
                        "vector": top.and_then(|h| h.vector),
                        "second_vector": second.and_then(|h| h.vector),
                    });
                    writeln!(dump, "{line}")?;
                }
                tally.add(case, &result);
            }
        }
        if let Some(path) = &args.vectors_cache
            && index.vectors().is_some()
        {
            cache.save(path, &pool).await?;
        }
        figures.in_scope = cases.iter().filter(|c| !c.docs.is_empty()).count();
        figures.out_of_scope = cases.len() - figures.in_scope;
        figures.modes = tallies.into_iter().map(|t| t.finish(figures.in_scope, figures.out_of_scope)).collect();
        anyhow::Ok(figures)
    }
    .await;
    scratch.stop().await?;
    result
}

/// Counts of one mode as the questions go by.
struct Tally {
    mode: Mode,
    hits1: usize,
    hits5: usize,
    reciprocal_ranks: f64,
    rejected: usize,
    right: usize,
    wrong: usize,
    misses: Vec<String>,
}

impl Tally {
    fn new(mode: Mode) -> Self {
        Self { mode, hits1: 0, hits5: 0, reciprocal_ranks: 0.0, rejected: 0, right: 0, wrong: 0, misses: Vec::new() }
    }

    fn add(&mut self, case: &Case, result: &SearchResult) {
        let confident = engine::confident(result);
        let top = result.hits.first().map_or(String::from("nothing"), |h| {
            format!("{} ({:.2}/{})", h.chunk.doc_path, h.coverage, h.vector.map_or("-".into(), |v| format!("{v:.2}")))
        });
        if case.docs.is_empty() {
            if confident.is_none() {
                self.rejected += 1;
            } else {
                self.misses.push(format!("out of scope, answered: {:?} → {top}", case.q));
            }
            return;
        }
        let rank = document_rank(case, result);
        if rank == Some(1) {
            self.hits1 += 1;
        }
        if rank.is_some_and(|r| r <= 5) {
            self.hits5 += 1;
        }
        if let Some(r) = rank {
            self.reciprocal_ranks += 1.0 / r as f64;
        }
        match confident {
            Some(hit) if case.docs.contains(&hit.chunk.doc_path) => self.right += 1,
            Some(_) => {
                self.wrong += 1;
                self.misses.push(format!("answered wrongly: {:?} → want {:?}, got {top}", case.q, case.docs));
            }
            None if rank != Some(1) => {
                self.misses.push(format!("rank {rank:?}: {:?} → want {:?}, got {top}", case.q, case.docs))
            }
            None => self.misses.push(format!("below threshold: {:?} → {top}", case.q)),
        }
    }

    fn finish(self, in_scope: usize, out_of_scope: usize) -> ModeFigures {
        let n = in_scope.max(1) as f64;
        ModeFigures {
            name: self.mode.name.into(),
            recall_at_1: self.hits1 as f64 / n,
            recall_at_5: self.hits5 as f64 / n,
            mrr_at_10: self.reciprocal_ranks / n,
            // No out-of-scope questions: no figure.
            rejection: if out_of_scope == 0 { f64::NAN } else { self.rejected as f64 / out_of_scope as f64 },
            engine_right: self.right as f64 / n,
            engine_wrong: self.wrong as f64 / n,
            engine_clarify: (in_scope - self.right - self.wrong) as f64 / n,
            misses: self.misses,
        }
    }
}

/// The 1-based rank of the first document answering `case` among the first ten distinct
/// documents of the hits, if it is there.
fn document_rank(case: &Case, result: &SearchResult) -> Option<usize> {
    let mut ranked: Vec<&str> = Vec::new();
    for hit in &result.hits {
        if !ranked.contains(&hit.chunk.doc_path.as_str()) {
            ranked.push(&hit.chunk.doc_path);
        }
    }
    ranked.iter().take(10).position(|d| case.docs.iter().any(|e| e == d)).map(|p| p + 1)
}

pub fn print_retrieval(figures: &RetrievalFigures, all_misses: bool) {
    println!("knowledge   {} ({} documents, {} chunks)", figures.knowledge, figures.documents, figures.chunks);
    println!(
        "questions   {} ({} in scope, {} out of scope)",
        figures.questions, figures.in_scope, figures.out_of_scope
    );
    println!(
        "embeddings  {}",
        figures.embeddings.as_deref().unwrap_or("none configured (CONCIERGE_EMBEDDINGS_URL): lexical only")
    );
    println!();
    print!("{:<26}", "");
    for mode in &figures.modes {
        print!("{:>12}", mode.name);
    }
    println!();
    type Row = (&'static str, fn(&ModeFigures) -> f64);
    let rows: [Row; 7] = [
        ("recall@1", |m| m.recall_at_1),
        ("recall@5", |m| m.recall_at_5),
        ("MRR@10", |m| m.mrr_at_10),
        ("out-of-scope rejection", |m| m.rejection),
        ("engine: right answer", |m| m.engine_right),
        ("engine: wrong answer", |m| m.engine_wrong),
        ("engine: asks to clarify", |m| m.engine_clarify),
    ];
    for (label, value) in rows {
        print!("{label:<26}");
        for mode in &figures.modes {
            match value(mode) {
                v if v.is_nan() => print!("{:>12}", "-"),
                v => print!("{v:>12.3}"),
            }
        }
        println!();
    }
    println!("\n(engine rows are shares of the in-scope questions; rejection is of the out-of-scope ones)");
    // The misses of the ranking the system uses.
    let used = figures.modes.iter().find(|m| m.name.starts_with("rrf")).or(figures.modes.first());
    if let Some(mode) = used.filter(|m| !m.misses.is_empty()) {
        println!("\nmisses of {} ({}):", mode.name, mode.misses.len());
        let shown = if all_misses { mode.misses.len() } else { 40 };
        for miss in mode.misses.iter().take(shown) {
            println!("  {miss}");
        }
    }
}

/// Vectors kept between runs: passages by (model, text hash) with their model's row, queries
/// by (query model, text).
#[derive(Default)]
struct VectorCache {
    models: Vec<serde_json::Value>,
    passages: Vec<(String, String, Vec<f32>)>,
    queries: HashMap<(String, String), Vec<f32>>,
}

impl VectorCache {
    fn load(path: &std::path::Path) -> anyhow::Result<Self> {
        let mut cache = Self::default();
        if !path.exists() {
            return Ok(cache);
        }
        for line in read_jsonl::<serde_json::Value>(path)? {
            let text = |key: &str| line[key].as_str().unwrap_or_default().to_owned();
            let vector = || -> Vec<f32> { serde_json::from_value(line["vector"].clone()).unwrap_or_default() };
            match line["kind"].as_str() {
                Some("model") => cache.models.push(line.clone()),
                Some("passage") => cache.passages.push((text("model"), text("hash"), vector())),
                Some("query") => {
                    cache.queries.insert((text("model"), text("text")), vector());
                }
                _ => {}
            }
        }
        Ok(cache)
    }

    /// Store the cached passages' vectors in the scratch database, where the sync finds them.
    async fn prime(&self, pool: &sqlx::PgPool) -> anyhow::Result<()> {
        for model in &self.models {
            sqlx::query(
                "INSERT INTO knowledge_vector_models (model, query_model, query_prefix, passage_prefix, dims)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .bind(model["model"].as_str())
            .bind(model["query_model"].as_str())
            .bind(model["query_prefix"].as_str())
            .bind(model["passage_prefix"].as_str())
            .bind(model["dims"].as_i64().map(|d| d as i32))
            .execute(pool)
            .await?;
        }
        for (model, hash, vector) in &self.passages {
            sqlx::query(
                "INSERT INTO knowledge_vectors (model, text_hash, vector) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(model)
            .bind(hash)
            .bind(vector)
            .execute(pool)
            .await?;
        }
        Ok(())
    }

    fn query(&self, vectors: Option<&concierge_shared::knowledge::Vectors>, text: &str) -> Option<Vec<f32>> {
        let vectors = vectors?;
        self.queries.get(&(vectors.space.query_model.clone(), format!("{}{text}", vectors.space.query_prefix))).cloned()
    }

    async fn save(&self, path: &std::path::Path, pool: &sqlx::PgPool) -> anyhow::Result<()> {
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        let models: Vec<(String, String, String, String, i32)> = sqlx::query_as(
            "SELECT model, query_model, query_prefix, passage_prefix, dims FROM knowledge_vector_models",
        )
        .fetch_all(pool)
        .await?;
        for (model, query_model, query_prefix, passage_prefix, dims) in models {
            let line = serde_json::json!({ "kind": "model", "model": model, "query_model": query_model,
                "query_prefix": query_prefix, "passage_prefix": passage_prefix, "dims": dims });
            writeln!(out, "{line}")?;
        }
        let rows: Vec<(String, String, Vec<f32>)> =
            sqlx::query_as("SELECT model, text_hash, vector FROM knowledge_vectors").fetch_all(pool).await?;
        for (model, hash, vector) in rows {
            writeln!(
                out,
                "{}",
                serde_json::json!({ "kind": "passage", "model": model, "hash": hash, "vector": vector })
            )?;
        }
        for ((model, text), vector) in &self.queries {
            writeln!(
                out,
                "{}",
                serde_json::json!({ "kind": "query", "model": model, "text": text, "vector": vector })
            )?;
        }
        Ok(())
    }
}
