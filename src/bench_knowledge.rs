//! `concierge bench knowledge`: index build time, search latency and memory for a synthetic
//! knowledge base of many documents, written with the real base's words in their real
//! proportions, searched on one thread with questions of the same vocabulary; then the vector
//! half of hybrid search over synthetic embeddings of the same chunks, clustered by document
//! topic, and the two halves together.

use std::{path::Path, time::Instant};

use clap::Args;
use concierge_shared::{
    embeddings::Space as EmbeddingSpace,
    knowledge::{KnowledgeIndex, SearchOptions, VectorIndex, Vectors, load_dir, parse_document},
};
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng, rngs::StdRng, seq::IndexedRandom};

#[derive(Debug, Args)]
pub struct KnowledgeBenchArgs {
    /// Synthetic documents to index.
    #[arg(long, default_value_t = 10_000)]
    pub docs: usize,
    /// Queries to time.
    #[arg(long, default_value_t = 5_000)]
    pub queries: usize,
    /// Dimensions of the synthetic embeddings (multilingual-e5-small has 384).
    #[arg(long, default_value_t = 384)]
    pub dims: usize,
    /// Candidates each half of a hybrid search fetches before fusion.
    #[arg(long, default_value_t = 30)]
    pub candidates: usize,
}

/// Topics the synthetic documents are spread over; a document's chunks lie near its topic.
const TOPICS: usize = 200;
/// Queries whose vector results are compared with an exact scan, for the recall figure.
const RECALL_QUERIES: usize = 200;
/// The target for hybrid search at 10,000 documents, embedding call excluded.
const HYBRID_TARGET_MS: f64 = 10.0;
/// What the fused searches choose from: each ranking's candidates.
const CANDIDATES_NOTE: &str = "60 candidates a ranking";

pub fn run(knowledge_dir: &Path, args: &KnowledgeBenchArgs) -> anyhow::Result<()> {
    let (real, _) = load_dir(knowledge_dir)?;
    let words: Vec<String> = real
        .iter()
        .flat_map(|d| d.chunks.iter())
        .flat_map(|c| c.text.split(|ch: char| !ch.is_alphanumeric()).map(str::to_owned).collect::<Vec<_>>())
        .filter(|w| w.chars().count() > 1)
        .collect();
    anyhow::ensure!(!words.is_empty(), "the knowledge base at {} has no text", knowledge_dir.display());
    let mut rng = StdRng::seed_from_u64(2026);
    let phrase = |rng: &mut StdRng, n: usize| -> String {
        (0..n).map(|_| words.choose(rng).expect("non-empty").as_str()).collect::<Vec<_>>().join(" ")
    };

    println!("Generating {} documents…", args.docs);
    let documents: Vec<_> = (0..args.docs)
        .map(|n| {
            let mut text = format!(
                "---\ntitle: {}\ncategory: faq\ntags: [{}]\nlanguage: ru\nupdated: 2026-11-01\n---\n\n{}\n",
                phrase(&mut rng, 5),
                phrase(&mut rng, 2).replace(' ', ", "),
                phrase(&mut rng, 30)
            );
            for _ in 0..rng.random_range(3..=7) {
                let body_words = rng.random_range(40..=120);
                text.push_str(&format!("\n## {}\n{}\n", phrase(&mut rng, 4), phrase(&mut rng, body_words)));
            }
            parse_document(&format!("synthetic/{n}.md"), &text)
        })
        .collect::<Result<_, _>>()?;
    let chunks: usize = documents.iter().map(|d| d.chunks.len()).sum();
    // The document of each chunk, in the index's chunk order, for the synthetic embeddings.
    let chunk_docs: Vec<usize> =
        documents.iter().enumerate().flat_map(|(n, d)| std::iter::repeat_n(n, d.chunks.len())).collect();

    let rss_before = rss();
    let started = Instant::now();
    let index = KnowledgeIndex::build(&documents)?;
    let build = started.elapsed();
    drop(documents);
    let rss_after = rss();

    let queries: Vec<String> = (0..args.queries)
        .map(|_| {
            let n = rng.random_range(2..=8);
            phrase(&mut rng, n)
        })
        .collect();
    for query in queries.iter().take(200) {
        index.search(query, 5);
    }
    let mut latencies = Histogram::<u64>::new(3)?;
    for query in &queries {
        let started = Instant::now();
        std::hint::black_box(index.search(query, 5));
        latencies.record(started.elapsed().as_micros() as u64)?;
    }

    println!("\n=== Knowledge search benchmark ===");
    println!("documents {}   chunks {chunks}   build {:.2} s", args.docs, build.as_secs_f64());
    println!(
        "search (one thread, top 5, {} queries)   p50 {:.2} ms   p99 {:.2} ms   max {:.2} ms   (target p99 < 5 ms) {}",
        latencies.len(),
        latencies.value_at_quantile(0.5) as f64 / 1000.0,
        latencies.value_at_quantile(0.99) as f64 / 1000.0,
        latencies.max() as f64 / 1000.0,
        if latencies.value_at_quantile(0.99) < 5_000 { "ok" } else { "MISSED" }
    );
    println!("memory   index and chunks: {:.0} MB resident", (rss_after.saturating_sub(rss_before)) as f64 / 1e6);

    println!("\nGenerating {chunks} synthetic {}-dimensional embeddings…", args.dims);
    let space = Space::new(args.dims, &mut StdRng::seed_from_u64(384));
    let mut vector_rng = StdRng::seed_from_u64(385);
    trim_heap();
    let rss_before = rss();
    let doc_topics: Vec<usize> = (0..args.docs).map(|_| vector_rng.random_range(0..TOPICS)).collect();
    let vectors: Vec<Option<Vec<f32>>> =
        chunk_docs.iter().map(|&doc| Some(space.near(doc_topics[doc], 0.8, &mut vector_rng))).collect();
    let started = Instant::now();
    let vectors = VectorIndex::build("synthetic".into(), args.dims, vectors)?;
    let vector_build = started.elapsed();
    trim_heap();
    let vector_rss = rss().saturating_sub(rss_before);

    let query_vectors: Vec<Vec<f32>> =
        (0..args.queries).map(|_| space.near(vector_rng.random_range(0..TOPICS), 1.0, &mut vector_rng)).collect();
    for query in query_vectors.iter().take(200) {
        vectors.search(query, args.candidates)?;
    }
    let mut vector_latencies = Histogram::<u64>::new(3)?;
    for query in &query_vectors {
        let started = Instant::now();
        std::hint::black_box(vectors.search(query, args.candidates)?);
        vector_latencies.record(started.elapsed().as_micros() as u64)?;
    }
    let mut found = 0;
    for query in query_vectors.iter().take(RECALL_QUERIES) {
        let exact: Vec<usize> = vectors.search_exact(query, 10)?.into_iter().map(|(ord, _)| ord).collect();
        found += vectors.search(query, 10)?.iter().filter(|(ord, _)| exact.contains(ord)).count();
    }
    let recall = found as f64 / (RECALL_QUERIES.min(query_vectors.len()).max(1) * 10) as f64;

    let (vector_count, dims, approximate, vector_bytes) =
        (vectors.len(), vectors.dims(), vectors.is_approximate(), vectors.memory_bytes());
    let space = EmbeddingSpace {
        model: "synthetic".into(),
        query_model: "synthetic".into(),
        query_prefix: String::new(),
        passage_prefix: String::new(),
    };
    let index = index.with_vectors(Vectors { space, index: vectors, min_similarity: None });
    let options = SearchOptions::top(5);
    let mut lexical_latencies = Histogram::<u64>::new(3)?;
    let mut hybrid_latencies = Histogram::<u64>::new(3)?;
    for (text, vector) in queries.iter().zip(&query_vectors) {
        let started = Instant::now();
        std::hint::black_box(index.search_with(text, None, &options));
        lexical_latencies.record(started.elapsed().as_micros() as u64)?;
        let started = Instant::now();
        std::hint::black_box(index.search_with(text, Some(vector), &options));
        hybrid_latencies.record(started.elapsed().as_micros() as u64)?;
    }

    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!("\n=== Hybrid search benchmark ===");
    println!(
        "vectors {}   dims {}   search {}   build {:.2} s",
        vector_count,
        dims,
        if approximate { "approximate (HNSW graph)" } else { "exact scan" },
        vector_build.as_secs_f64()
    );
    println!(
        "memory   vectors{}: {:.0} MB counted, {:.0} MB resident",
        if approximate { " and graph" } else { "" },
        vector_bytes as f64 / 1e6,
        vector_rss as f64 / 1e6
    );
    println!(
        "vector search (one thread, top {}, {} queries)   p50 {:.2} ms   p99 {:.2} ms   max {:.2} ms   recall@10 vs exact {:.3}",
        args.candidates,
        vector_latencies.len(),
        ms(&vector_latencies, 0.5),
        ms(&vector_latencies, 0.99),
        vector_latencies.max() as f64 / 1000.0,
        recall
    );
    println!(
        "lexical search (top 5 of {CANDIDATES_NOTE})   p50 {:.2} ms   p99 {:.2} ms",
        ms(&lexical_latencies, 0.5),
        ms(&lexical_latencies, 0.99)
    );
    let hybrid_p99 = ms(&hybrid_latencies, 0.99);
    println!(
        "hybrid search (lexical and vector rankings fused, top 5 of {CANDIDATES_NOTE}; the query's embedding given)   p50 {:.2} ms   p99 {hybrid_p99:.2} ms   (target p99 ≤ {HYBRID_TARGET_MS} ms) {}",
        ms(&hybrid_latencies, 0.5),
        if hybrid_p99 <= HYBRID_TARGET_MS { "ok" } else { "MISSED" }
    );
    Ok(())
}

/// Synthetic embedding space: random topic centres, and points scattered around them so that
/// the data has the cluster structure of real embeddings rather than being uniform noise.
struct Space {
    centres: Vec<Vec<f32>>,
}

impl Space {
    fn new(dims: usize, rng: &mut StdRng) -> Self {
        Self { centres: (0..TOPICS).map(|_| (0..dims).map(|_| rng.random_range(-1.0..1.0)).collect()).collect() }
    }

    /// A point near topic `topic`: its centre plus uniform noise of up to `spread` per component.
    fn near(&self, topic: usize, spread: f32, rng: &mut StdRng) -> Vec<f32> {
        self.centres[topic].iter().map(|c| c + rng.random_range(-spread..spread)).collect()
    }
}

/// Hands freed heap pages back to the system, so that a resident-memory delta counts what is
/// kept rather than what the allocator still holds.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only releases free memory of the allocator; it has no preconditions.
        unsafe { libc::malloc_trim(0) };
    }
}

/// Resident memory of this process, in bytes.
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kb| kb * 1024)
}
