//! The in-memory tantivy index over knowledge chunks.
//!
//! Text goes through the one analyzer of [`super::analyzer`]. Title and tags weigh three and
//! two times the body, headings twice.
//!
//! A query term is matched by its alternatives: itself, the stems of its colloquial synonyms
//! ("зум" → zoom, "видос" → видео), and, when the knowledge base does not know the term, the
//! known terms within one typo (two for long words), found with a Levenshtein automaton over
//! the vocabulary.
//!
//! Besides the BM25 score, each hit reports its coverage: the share of the query's terms,
//! weighted by their rarity, that occur in the chunk or its document's title. Coverage is
//! comparable across queries, which BM25 is not, so it is what decides whether a hit answers
//! the question at all.

use std::collections::HashMap;

use fst::{IntoStreamer, Streamer};
use levenshtein_automata::LevenshteinAutomatonBuilder;
use tantivy::{
    Index, IndexReader, ReloadPolicy, TantivyDocument, Term,
    collector::TopDocs,
    query::{BooleanQuery, BoostQuery, DisjunctionMaxQuery, Occur, Query, TermQuery},
    schema::{Field, IndexRecordOption, STORED, Schema, TextFieldIndexing, TextOptions, Value},
    tokenizer::TextAnalyzer,
};

use super::{
    Chunk, Document,
    analyzer::{ANALYZER, SYNONYMS, analyze_distinct, analyzer, fold},
};

/// Field weights: how much a match in each field counts.
const WEIGHTS: [(FieldKind, f32); 4] =
    [(FieldKind::Title, 3.0), (FieldKind::Heading, 2.0), (FieldKind::Tags, 2.0), (FieldKind::Body, 1.0)];

/// A corrected (fuzzy) term counts for this much of an exact one.
const FUZZY_WEIGHT: f32 = 0.7;
/// Corrections tried per unknown term.
const FUZZY_CANDIDATES: usize = 3;
/// A term the knowledge base does not know, with no correction, weighs this share of the
/// rarest term's weight in coverage: mostly noise, but a question made of such words is not
/// about anything the base covers.
const UNKNOWN_WEIGHT: f32 = 0.5;

#[derive(Clone, Copy)]
enum FieldKind {
    Title,
    Heading,
    Tags,
    Body,
}

struct Fields {
    ord: Field,
    title: Field,
    heading: Field,
    body: Field,
    tags: Field,
}

/// A searchable snapshot of the knowledge base. Cheap to share behind an `Arc`; rebuilt whole
/// when the knowledge base changes.
pub struct KnowledgeIndex {
    reader: IndexReader,
    fields: Fields,
    analyzer: TextAnalyzer,
    chunks: Vec<Chunk>,
    /// Every analysed term, numbered, and the terms by number.
    vocabulary: HashMap<String, u32>,
    terms: Vec<String>,
    /// The same terms, for typo correction.
    vocabulary_set: fst::Set<Vec<u8>>,
    /// In how many chunks each term occurs, by term number.
    doc_freq: Vec<u32>,
    /// Sorted term numbers of each chunk (with its document's title and tags).
    chunk_terms: Vec<Box<[u32]>>,
    /// Analysed synonyms: term → the terms it also stands for.
    synonyms: HashMap<String, Vec<String>>,
    typo1: LevenshteinAutomatonBuilder,
    typo2: LevenshteinAutomatonBuilder,
}

/// One ranked chunk.
#[derive(Debug, Clone)]
pub struct Hit {
    pub chunk: Chunk,
    /// BM25 with field weights; only comparable within one query.
    pub score: f32,
    /// Rarity-weighted share of the query's terms found in the chunk, 0..=1.
    pub coverage: f32,
}

#[derive(Debug, Clone, Default)]
pub struct SearchResult {
    pub hits: Vec<Hit>,
    /// The query's distinct terms after analysis; zero means nothing searchable was asked.
    pub query_terms: usize,
}

/// A query term and what may match it.
struct Slot {
    /// (term number, weight) of each alternative known to the index.
    alternatives: Vec<(u32, f32)>,
    /// The term's weight in coverage.
    weight: f32,
}

impl KnowledgeIndex {
    /// Index the chunks of `documents` in RAM. CPU-bound: call it off the async runtime.
    pub fn build(documents: &[Document]) -> tantivy::Result<Self> {
        let mut schema = Schema::builder();
        let text = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(ANALYZER)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        );
        let fields = Fields {
            ord: schema.add_u64_field("ord", STORED),
            title: schema.add_text_field("title", text.clone()),
            heading: schema.add_text_field("heading", text.clone()),
            body: schema.add_text_field("body", text.clone()),
            tags: schema.add_text_field("tags", text),
        };
        let index = Index::create_in_ram(schema.build());
        let analyzer = analyzer();
        index.tokenizers().register(ANALYZER, analyzer.clone());

        let chunks: Vec<Chunk> = documents.iter().flat_map(|d| d.chunks.iter().cloned()).collect();
        let mut writer = index.writer_with_num_threads(1, 64 * 1024 * 1024)?;
        let mut vocabulary: HashMap<String, u32> = HashMap::new();
        let mut doc_freq: Vec<u32> = Vec::new();
        let mut chunk_terms = Vec::with_capacity(chunks.len());
        let mut scratch = analyzer.clone();
        for (ord, chunk) in chunks.iter().enumerate() {
            let tags = chunk.tags.join(" ");
            let mut doc = TantivyDocument::default();
            doc.add_u64(fields.ord, ord as u64);
            doc.add_text(fields.title, fold(&chunk.doc_title));
            doc.add_text(fields.heading, fold(&chunk.heading));
            doc.add_text(fields.body, fold(&chunk.text));
            doc.add_text(fields.tags, fold(&tags));
            writer.add_document(doc)?;

            let all = format!("{} {} {} {}", chunk.doc_title, chunk.heading, tags, chunk.text);
            let mut ids: Vec<u32> = analyze_distinct(&mut scratch, &all)
                .into_iter()
                .map(|term| {
                    let next = vocabulary.len() as u32;
                    let id = *vocabulary.entry(term).or_insert(next);
                    if id == next {
                        doc_freq.push(0);
                    }
                    doc_freq[id as usize] += 1;
                    id
                })
                .collect();
            ids.sort_unstable();
            chunk_terms.push(ids.into_boxed_slice());
        }
        writer.commit()?;
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;

        let mut terms = vec![String::new(); vocabulary.len()];
        for (term, id) in &vocabulary {
            terms[*id as usize] = term.clone();
        }
        let mut sorted: Vec<&str> = terms.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        let vocabulary_set =
            fst::Set::from_iter(sorted).map_err(|e| tantivy::TantivyError::InternalError(e.to_string()))?;
        let mut synonyms: HashMap<String, Vec<String>> = HashMap::new();
        for (word, meaning) in SYNONYMS {
            for term in analyze_distinct(&mut scratch, word) {
                synonyms.entry(term).or_default().extend(analyze_distinct(&mut scratch, meaning));
            }
        }
        Ok(Self {
            reader,
            fields,
            analyzer,
            chunks,
            vocabulary,
            terms,
            vocabulary_set,
            doc_freq,
            chunk_terms,
            synonyms,
            typo1: LevenshteinAutomatonBuilder::new(1, true),
            typo2: LevenshteinAutomatonBuilder::new(2, true),
        })
    }

    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// The best `limit` chunks for `query`, best first.
    pub fn search(&self, query: &str, limit: usize) -> SearchResult {
        let mut analyzer = self.analyzer.clone();
        let terms = analyze_distinct(&mut analyzer, query);
        let slots: Vec<Slot> = terms.iter().map(|term| self.slot(term)).collect();
        let empty = SearchResult { hits: Vec::new(), query_terms: terms.len() };
        if self.chunks.is_empty() || slots.iter().all(|s| s.alternatives.is_empty()) {
            return empty;
        }

        let clauses: Vec<(Occur, Box<dyn Query>)> = slots
            .iter()
            .filter(|s| !s.alternatives.is_empty())
            .map(|slot| {
                let mut per_field: Vec<Box<dyn Query>> = Vec::new();
                for (id, alternative_weight) in &slot.alternatives {
                    let text = &self.terms[*id as usize];
                    for (kind, weight) in WEIGHTS {
                        let query =
                            TermQuery::new(Term::from_field_text(self.field(kind), text), IndexRecordOption::WithFreqs);
                        per_field.push(Box::new(BoostQuery::new(Box::new(query), weight * alternative_weight)));
                    }
                }
                (Occur::Should, Box::new(DisjunctionMaxQuery::with_tie_breaker(per_field, 0.3)) as Box<dyn Query>)
            })
            .collect();
        let query = BooleanQuery::new(clauses);
        let searcher = self.reader.searcher();
        let top = match searcher.search(&query, &TopDocs::with_limit(limit).order_by_score()) {
            Ok(top) => top,
            Err(error) => {
                tracing::error!(%error, "knowledge search failed");
                return empty;
            }
        };

        let total: f32 = slots.iter().map(|s| s.weight).sum();
        let hits = top
            .into_iter()
            .filter_map(|(score, address)| {
                let doc: TantivyDocument = searcher.doc(address).ok()?;
                let ord = doc.get_first(self.fields.ord)?.as_u64()? as usize;
                let chunk_terms = &self.chunk_terms[ord];
                let matched: f32 = slots
                    .iter()
                    .filter_map(|slot| {
                        slot.alternatives
                            .iter()
                            .filter(|(id, _)| chunk_terms.binary_search(id).is_ok())
                            .map(|(_, w)| slot.weight * w)
                            .reduce(f32::max)
                    })
                    .sum();
                Some(Hit { chunk: self.chunks[ord].clone(), score, coverage: matched / total })
            })
            .collect();
        SearchResult { hits, query_terms: terms.len() }
    }

    /// What may match `term`, and how much it weighs.
    fn slot(&self, term: &str) -> Slot {
        let mut alternatives: Vec<(u32, f32)> = Vec::new();
        let push = |id: u32, weight: f32, alternatives: &mut Vec<(u32, f32)>| {
            if !alternatives.iter().any(|(known, _)| *known == id) {
                alternatives.push((id, weight));
            }
        };
        let known = self.vocabulary.get(term).copied();
        if let Some(id) = known {
            push(id, 1.0, &mut alternatives);
        }
        for synonym in self.synonyms.get(term).into_iter().flatten() {
            if let Some(&id) = self.vocabulary.get(synonym) {
                push(id, 1.0, &mut alternatives);
            }
        }
        if known.is_none() {
            for id in self.corrections(term) {
                push(id, FUZZY_WEIGHT, &mut alternatives);
            }
        }
        let weight = match alternatives.iter().map(|(id, _)| self.idf(self.doc_freq[*id as usize])).reduce(f32::max) {
            Some(weight) => weight,
            None => self.idf(0) * UNKNOWN_WEIGHT,
        };
        Slot { alternatives, weight }
    }

    /// Known terms within one typo of `term` (two for long ones), most common first.
    fn corrections(&self, term: &str) -> Vec<u32> {
        let length = term.chars().count();
        let builder = match length {
            0..=3 => return Vec::new(),
            4..=7 => &self.typo1,
            _ => &self.typo2,
        };
        let dfa = builder.build_dfa(term);
        let mut stream = self.vocabulary_set.search(&dfa).into_stream();
        let mut found: Vec<u32> = Vec::new();
        while let Some(bytes) = stream.next() {
            if let Some(&id) = std::str::from_utf8(bytes).ok().and_then(|t| self.vocabulary.get(t)) {
                found.push(id);
            }
        }
        found.sort_by_key(|id| std::cmp::Reverse(self.doc_freq[*id as usize]));
        found.truncate(FUZZY_CANDIDATES);
        found
    }

    fn field(&self, kind: FieldKind) -> Field {
        match kind {
            FieldKind::Title => self.fields.title,
            FieldKind::Heading => self.fields.heading,
            FieldKind::Tags => self.fields.tags,
            FieldKind::Body => self.fields.body,
        }
    }

    /// Inverse chunk frequency; a term no chunk has weighs the most.
    fn idf(&self, doc_freq: u32) -> f32 {
        let n = self.chunks.len() as f32;
        let df = doc_freq as f32;
        (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knowledge::parse_document;

    fn doc(path: &str, title: &str, body: &str) -> Document {
        let source =
            format!("---\ntitle: {title}\ncategory: faq\ntags: []\nlanguage: ru\nupdated: 2026-10-01\n---\n{body}");
        parse_document(path, &source).unwrap()
    }

    fn index() -> KnowledgeIndex {
        KnowledgeIndex::build(&[
            doc("pay.md", "Как оплатить подписку", "## Оплата картой\nПодписку можно оплатить банковской картой."),
            doc("zoom.md", "Нет звука в Zoom", "## Проверьте микрофон\nВключите микрофон в настройках Zoom."),
            doc("rec.md", "Где найти запись урока", "## Записи\nЗапись урока появится в разделе «Мои уроки»."),
        ])
        .unwrap()
    }

    #[test]
    fn finds_inflected_russian_and_reports_coverage() {
        let index = index();
        let result = index.search("как оплатить подписку?", 5);
        assert_eq!(result.hits[0].chunk.doc_path, "pay.md");
        assert!(result.hits[0].coverage > 0.99);
        assert_eq!(index.search("не слышно звука, микрофоны", 5).hits[0].chunk.doc_path, "zoom.md");
        assert!(index.search("погода в Москве", 5).hits.iter().all(|h| h.coverage < 0.5));
    }

    #[test]
    fn tolerates_typos_synonyms_and_yo() {
        let index = index();
        assert_eq!(index.search("оплотить подпеску", 5).hits[0].chunk.doc_path, "pay.md");
        assert_eq!(index.search("в зуме нет звука", 5).hits[0].chunk.doc_path, "zoom.md");
        assert_eq!(index.search("где видос с занятия", 5).hits[0].chunk.doc_path, "rec.md");
        assert_eq!(index.search("запИсь урокА ещё", 5).hits[0].chunk.doc_path, "rec.md");
    }
}
