//! `concierge bench knowledge`: index build time, search latency and memory for a synthetic
//! knowledge base of many documents, written with the real base's words in their real
//! proportions, searched on one thread with questions of the same vocabulary.

use std::{path::Path, time::Instant};

use clap::Args;
use concierge_shared::knowledge::{KnowledgeIndex, load_dir, parse_document};
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
}

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
    Ok(())
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
