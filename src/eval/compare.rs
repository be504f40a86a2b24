//! `concierge eval decisions --compare DIR_A DIR_B`: two prompt versions decide the same
//! labelled conversations in one run, and the report sets their figures side by side, lists
//! the conversations where they decide differently, and says, with McNemar's exact test on the
//! paired right/wrong outcomes, whether the difference in accuracy is more than chance at this
//! sample size.
//!
//! Invariant: both sides see identical conversations (each case is stored once per side, in the
//! same scratch database, before that side decides it), so every pair differs only in the prompt.

use std::{collections::BTreeSet, fmt::Write as _, path::Path};

use concierge_shared::config::Config;
use serde::Serialize;

use super::{
    decisions::{DecisionCase, DecisionRun, Engine, Tally, decide, with_bench},
    read_jsonl,
};

/// The level the report's sentence judges significance at.
pub const SIGNIFICANCE: f64 = 0.05;

/// McNemar's exact test: the two-sided p-value of `b` and `c` discordant pairs (A right and B
/// wrong; A wrong and B right) under the null hypothesis that either kind is equally likely,
/// `min(1, 2 · Σ_{i ≤ min(b,c)} C(b+c, i) / 2^(b+c))`. Computed in log space, so it stays exact
/// to floating point for any count (2^1000 overflows an f64; its logarithm does not). No
/// discordant pair gives 1.
pub fn mcnemar_exact(b: usize, c: usize) -> f64 {
    let n = b + c;
    let k = b.min(c);
    // ln C(n, i) by the recurrence C(n, i) = C(n, i - 1) · (n - i + 1) / i.
    let mut ln_binomial = 0.0_f64;
    let mut ln_terms = Vec::with_capacity(k + 1);
    ln_terms.push(0.0);
    for i in 1..=k {
        ln_binomial += ((n - i + 1) as f64).ln() - (i as f64).ln();
        ln_terms.push(ln_binomial);
    }
    let largest = ln_terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let ln_sum = largest + ln_terms.iter().map(|t| (t - largest).exp()).sum::<f64>().ln();
    let ln_p = std::f64::consts::LN_2 + ln_sum - n as f64 * std::f64::consts::LN_2;
    ln_p.exp().min(1.0)
}

/// The report's plain sentence about the test.
pub fn verdict(b: usize, c: usize, p: f64, cases: usize) -> String {
    if b + c == 0 {
        return format!(
            "No discordant pairs: A and B are right and wrong on the same {cases} conversations, so there is no difference to test."
        );
    }
    let (better, more, fewer) = if c > b { ("B", c, b) } else { ("A", b, c) };
    if p < SIGNIFICANCE {
        format!(
            "The difference is significant at {SIGNIFICANCE} (p = {p:.4}): of the {} conversations only one of them decides right, {better} does on {more} and the other on {fewer}.",
            b + c
        )
    } else {
        format!(
            "The difference is not significant at {SIGNIFICANCE} (p = {p:.4}): {more} against {fewer} discordant conversations out of {cases} could well be chance at this sample size."
        )
    }
}

/// A conversation the two sides decided differently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    pub id: String,
    pub expected: String,
    pub a: String,
    pub b: String,
    pub a_right: bool,
    pub b_right: bool,
}

/// Both runs and their paired test.
#[derive(Debug)]
pub struct Comparison {
    pub a: DecisionRun,
    pub b: DecisionRun,
    /// In the set's order.
    pub differing: Vec<Difference>,
    /// A right and B wrong (McNemar's b).
    pub a_only_right: usize,
    /// A wrong and B right (McNemar's c).
    pub b_only_right: usize,
    pub p_value: f64,
}

impl Comparison {
    pub fn verdict(&self) -> String {
        verdict(self.a_only_right, self.b_only_right, self.p_value, self.a.figures.cases)
    }
}

/// Decide every conversation of `file` with the prompts of `a` and of `b`.
pub async fn compare(config: &Config, file: &Path, a: &Path, b: &Path) -> anyhow::Result<Comparison> {
    let cases: Vec<DecisionCase> = read_jsonl(file)?;
    let engines = [Engine::new(&config.ai, Some(a))?, Engine::new(&config.ai, Some(b))?];
    anyhow::ensure!(
        engines[0].reads_prompts(),
        "--compare compares prompts, and the offline engine reads none: configure a model (CONCIERGE_AI_PROVIDER, CONCIERGE_LLM_BASE_URL)"
    );
    let started_at = chrono::Utc::now();
    let tallies = with_bench(config, async |bench| {
        let mut tallies = [Tally::default(), Tally::default()];
        for case in &cases {
            for (engine, tally) in engines.iter().zip(&mut tallies) {
                let (decision, message, cost) = decide(bench, engine, case).await?;
                tally.add(case, &decision, &message, cost);
            }
        }
        anyhow::Ok(tallies)
    })
    .await?;
    let finished_at = chrono::Utc::now();
    let [engine_a, engine_b] = engines;
    let [tally_a, tally_b] = tallies;
    let run = |engine: Engine, tally: Tally| {
        let (figures, outcomes) = tally.finish(&engine.info);
        DecisionRun { file: file.to_owned(), engine: engine.info, figures, outcomes, started_at, finished_at }
    };
    Ok(paired(run(engine_a, tally_a), run(engine_b, tally_b)))
}

/// Pair two runs over the same cases, in order.
pub fn paired(a: DecisionRun, b: DecisionRun) -> Comparison {
    let mut differing = Vec::new();
    let (mut a_only_right, mut b_only_right) = (0, 0);
    for (x, y) in a.outcomes.iter().zip(&b.outcomes) {
        match (x.right, y.right) {
            (true, false) => a_only_right += 1,
            (false, true) => b_only_right += 1,
            _ => {}
        }
        if x.decided != y.decided {
            differing.push(Difference {
                id: x.id.clone(),
                expected: x.expected.clone(),
                a: x.decided.clone(),
                b: y.decided.clone(),
                a_right: x.right,
                b_right: y.right,
            });
        }
    }
    let p_value = mcnemar_exact(a_only_right, b_only_right);
    Comparison { a, b, differing, a_only_right, b_only_right, p_value }
}

/// The side-by-side report.
pub fn render_comparison(comparison: &Comparison) -> String {
    let (a, b) = (&comparison.a.figures, &comparison.b.figures);
    let mut out = String::new();
    let mut row = |name: &str, x: &str, y: &str| {
        let _ = writeln!(out, "{name:<20} {x:<40} {y}");
    };
    row("set", &format!("{} ({} conversations)", comparison.a.file.display(), a.cases), "");
    row("", "A", "B");
    let dir = |run: &DecisionRun| run.engine.prompts_dir.clone().unwrap_or_default();
    row("prompts", &dir(&comparison.a), &dir(&comparison.b));
    row("engine", &a.engine, &b.engine);
    row("decision accuracy", &format!("{:.3}", a.accuracy), &format!("{:.3}", b.accuracy));
    let labels: BTreeSet<&String> = a.by_label.keys().chain(b.by_label.keys()).collect();
    for label in labels {
        let count = |figures: &super::DecisionFigures| {
            let (right, total) = figures.by_label.get(label).copied().unwrap_or_default();
            format!("{right}/{total}")
        };
        row(&format!("  {label}"), &count(a), &count(b));
    }
    row("citation accuracy", &format!("{:.3}", a.citation_accuracy), &format!("{:.3}", b.citation_accuracy));
    row("action accuracy", &format!("{:.3}", a.action_accuracy), &format!("{:.3}", b.action_accuracy));
    let tokens = |f: &super::DecisionFigures| f.prompt_tokens.map_or("-".to_owned(), |t| format!("{t:.0}"));
    row("prompt tokens", &tokens(a), &tokens(b));
    row("seconds/decision", &format!("{:.2}", a.seconds_per_decision), &format!("{:.2}", b.seconds_per_decision));
    let counted = |map: &std::collections::BTreeMap<String, usize>| {
        let listed: Vec<String> = map.iter().map(|(k, n)| format!("{k} {n}")).collect();
        if listed.is_empty() { "none".to_owned() } else { listed.join(", ") }
    };
    row("replies rejected", &counted(&a.rejections), &counted(&b.rejections));
    row("fallbacks", &counted(&a.fallbacks), &counted(&b.fallbacks));

    let _ = writeln!(out, "\nconversations decided differently ({}):", comparison.differing.len());
    if !comparison.differing.is_empty() {
        let _ = writeln!(out, "  {:<12} {:<10} {:<28} B", "id", "expected", "A");
    }
    let mark = |right: bool| if right { "right" } else { "wrong" };
    for d in &comparison.differing {
        let (a, b) = (format!("{} ({})", d.a, mark(d.a_right)), format!("{} ({})", d.b, mark(d.b_right)));
        let _ = writeln!(out, "  {:<12} {:<10} {a:<28} {b}", d.id, d.expected);
    }

    let (b_count, c_count) = (comparison.a_only_right, comparison.b_only_right);
    let _ = writeln!(out, "\nMcNemar's exact test on the paired right/wrong outcomes:");
    if b_count + c_count == 0 {
        let _ = writeln!(out, "  no discordant pairs (b = 0, c = 0)");
    } else {
        let _ = writeln!(
            out,
            "  b = {b_count} (A right, B wrong), c = {c_count} (A wrong, B right), two-sided p = {:.4}",
            comparison.p_value
        );
    }
    let _ = writeln!(out, "  {}", comparison.verdict());
    out
}

#[cfg(test)]
mod tests {
    use super::{mcnemar_exact, verdict};

    fn close(actual: f64, expected: f64) {
        assert!((actual - expected).abs() <= 1e-12 * expected.max(1e-300), "{actual} != {expected}");
    }

    #[test]
    fn mcnemar_matches_known_values() {
        // 2 · (1 + 10) / 1024
        close(mcnemar_exact(1, 9), 0.021_484_375);
        close(mcnemar_exact(9, 1), 0.021_484_375);
        close(mcnemar_exact(5, 5), 1.0);
        close(mcnemar_exact(0, 6), 0.031_25);
        close(mcnemar_exact(0, 1), 1.0);
        close(mcnemar_exact(0, 0), 1.0);
        // 2 · (1 + 7) / 128
        close(mcnemar_exact(1, 6), 0.125);
        // 2 · (1 + 20 + 190 + 1140) / 2^20
        close(mcnemar_exact(3, 17), 2.0 * 1351.0 / 1_048_576.0);
    }

    #[test]
    fn mcnemar_stays_exact_for_large_counts() {
        // 2 / 2^1000 = 2^-999: far below what a direct 2^n would reach before overflowing.
        close(mcnemar_exact(0, 1000), 2f64.powi(-999));
        // Computed exactly with rational arithmetic:
        // 2 · Σ_{i ≤ 450} C(1000, i) / 2^1000.
        close_rel(mcnemar_exact(450, 550), 0.001_730_536_084_976_317_6, 1e-9);
        // Balanced counts: p is 1.
        close(mcnemar_exact(500, 500), 1.0);
        // Symmetric in b and c.
        close_rel(mcnemar_exact(480, 520), 0.217_448_293_204_140_94, 1e-9);
        close(mcnemar_exact(520, 480), mcnemar_exact(480, 520));
    }

    fn close_rel(actual: f64, expected: f64, tolerance: f64) {
        assert!(((actual - expected) / expected).abs() <= tolerance, "{actual} != {expected}");
    }

    #[test]
    fn the_verdict_says_whether_the_difference_is_significant() {
        assert!(verdict(0, 0, 1.0, 40).starts_with("No discordant pairs"));
        let significant = verdict(1, 9, mcnemar_exact(1, 9), 40);
        assert!(significant.starts_with("The difference is significant at 0.05"), "{significant}");
        assert!(significant.contains("B does on 9"), "{significant}");
        let not = verdict(5, 2, mcnemar_exact(5, 2), 40);
        assert!(not.starts_with("The difference is not significant at 0.05"), "{not}");
    }
}
