//! The in-memory tantivy index over knowledge chunks.
//!
//! One analyzer serves Russian and English: split on non-alphanumerics, lowercase, fold ё to е,
//! drop stop words, then the Russian and the English Snowball stemmers (each leaves the other
//! alphabet alone). Title and tags weigh three and two times the body, headings twice.
//! Besides the BM25 score, each hit reports its coverage: the share of the query's terms,
//! weighted by their rarity, that occur in the chunk. Coverage is comparable across queries,
//! which BM25 is not, so it is what decides whether a hit answers the question at all.

use std::collections::{HashMap, HashSet};

use tantivy::{
    Index, IndexReader, ReloadPolicy, TantivyDocument, Term,
    collector::TopDocs,
    query::{BooleanQuery, BoostQuery, DisjunctionMaxQuery, Occur, Query, TermQuery},
    schema::{Field, IndexRecordOption, STORED, Schema, TextFieldIndexing, TextOptions, Value},
    tokenizer::{Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer},
};

use super::{Chunk, Document};

const ANALYZER: &str = "lectio_ru_en";

/// Words too common to tell documents apart. Negations stay: "нет звука" is not "звук".
const STOP_WORDS: &[&str] = &[
    "и",
    "в",
    "во",
    "на",
    "с",
    "со",
    "к",
    "ко",
    "по",
    "о",
    "об",
    "от",
    "до",
    "из",
    "за",
    "у",
    "для",
    "а",
    "но",
    "или",
    "ли",
    "же",
    "бы",
    "то",
    "это",
    "этот",
    "эта",
    "эти",
    "что",
    "чтобы",
    "как",
    "так",
    "там",
    "тут",
    "я",
    "мы",
    "вы",
    "ты",
    "он",
    "она",
    "оно",
    "они",
    "мне",
    "меня",
    "мой",
    "моя",
    "мои",
    "моё",
    "мое",
    "мою",
    "моего",
    "моей",
    "моих",
    "нас",
    "наш",
    "вас",
    "ваш",
    "ваша",
    "ваши",
    "вам",
    "ему",
    "его",
    "её",
    "ее",
    "их",
    "им",
    "при",
    "же",
    "ещё",
    "еще",
    "уже",
    "только",
    "вот",
    "какой",
    "какая",
    "какие",
    "где",
    "когда",
    "можно",
    "есть",
    "быть",
    "был",
    "была",
    "было",
    "были",
    "будет",
    "пожалуйста",
    "подскажите",
    "скажите",
    "здравствуйте",
    "привет",
    "добрый",
    "день",
    "вечер",
    "спасибо",
    "всё",
    "все",
    "очень",
    "просто",
    "тоже",
    "a",
    "an",
    "and",
    "are",
    "as",
    "at",
    "be",
    "but",
    "by",
    "for",
    "if",
    "in",
    "into",
    "is",
    "it",
    "of",
    "on",
    "or",
    "such",
    "that",
    "the",
    "their",
    "then",
    "there",
    "these",
    "they",
    "this",
    "to",
    "was",
    "will",
    "with",
    "how",
    "what",
    "where",
    "my",
    "i",
    "do",
    "does",
    "can",
    "please",
];

struct Fields {
    ord: Field,
    title: Field,
    heading: Field,
    body: Field,
    tags: Field,
}

/// Field weights: how much a match in each field counts.
const WEIGHTS: [(FieldKind, f32); 4] =
    [(FieldKind::Title, 3.0), (FieldKind::Heading, 2.0), (FieldKind::Tags, 2.0), (FieldKind::Body, 1.0)];

#[derive(Clone, Copy)]
enum FieldKind {
    Title,
    Heading,
    Tags,
    Body,
}

/// A searchable snapshot of the knowledge base. Cheap to share behind an `Arc`; rebuilt whole
/// when the knowledge base changes.
pub struct KnowledgeIndex {
    reader: IndexReader,
    fields: Fields,
    analyzer: TextAnalyzer,
    chunks: Vec<Chunk>,
    /// Analysed terms of each chunk (title, heading, tags, body), for coverage.
    chunk_terms: Vec<HashSet<String>>,
    /// In how many chunks each term occurs, for rarity weights.
    doc_freq: HashMap<String, usize>,
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
        let mut writer = index.writer_with_num_threads(1, 32 * 1024 * 1024)?;
        let mut chunk_terms = Vec::with_capacity(chunks.len());
        let mut doc_freq: HashMap<String, usize> = HashMap::new();
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
            let terms = analyze(&mut scratch, &all);
            for term in &terms {
                *doc_freq.entry(term.clone()).or_default() += 1;
            }
            chunk_terms.push(terms);
        }
        writer.commit()?;
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        Ok(Self { reader, fields, analyzer, chunks, chunk_terms, doc_freq })
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
        if terms.is_empty() || self.chunks.is_empty() {
            return SearchResult { hits: Vec::new(), query_terms: terms.len() };
        }

        let clauses: Vec<(Occur, Box<dyn Query>)> = terms
            .iter()
            .map(|term| {
                let per_field: Vec<Box<dyn Query>> = WEIGHTS
                    .iter()
                    .map(|(kind, weight)| {
                        let field = self.field(*kind);
                        let query = TermQuery::new(Term::from_field_text(field, term), IndexRecordOption::WithFreqs);
                        Box::new(BoostQuery::new(Box::new(query), *weight)) as Box<dyn Query>
                    })
                    .collect();
                (Occur::Should, Box::new(DisjunctionMaxQuery::with_tie_breaker(per_field, 0.3)) as Box<dyn Query>)
            })
            .collect();
        let query = BooleanQuery::new(clauses);
        let searcher = self.reader.searcher();
        let top = match searcher.search(&query, &TopDocs::with_limit(limit).order_by_score()) {
            Ok(top) => top,
            Err(error) => {
                tracing::error!(%error, "knowledge search failed");
                return SearchResult { hits: Vec::new(), query_terms: terms.len() };
            }
        };

        let weights: Vec<f32> = terms.iter().map(|t| self.idf(t)).collect();
        let total: f32 = weights.iter().sum();
        let hits = top
            .into_iter()
            .filter_map(|(score, address)| {
                let doc: TantivyDocument = searcher.doc(address).ok()?;
                let ord = doc.get_first(self.fields.ord)?.as_u64()? as usize;
                let chunk_terms = &self.chunk_terms[ord];
                let matched: f32 =
                    terms.iter().zip(&weights).filter(|(t, _)| chunk_terms.contains(*t)).map(|(_, w)| w).sum();
                Some(Hit { chunk: self.chunks[ord].clone(), score, coverage: matched / total })
            })
            .collect();
        SearchResult { hits, query_terms: terms.len() }
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
    fn idf(&self, term: &str) -> f32 {
        let n = self.chunks.len() as f32;
        let df = self.doc_freq.get(term).copied().unwrap_or(0) as f32;
        (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
    }
}

fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(StopWordFilter::remove(STOP_WORDS.iter().map(|w| w.to_string())))
        .filter(Stemmer::new(Language::Russian))
        .filter(Stemmer::new(Language::English))
        .build()
}

fn analyze(analyzer: &mut TextAnalyzer, text: &str) -> HashSet<String> {
    analyze_distinct(analyzer, text).into_iter().collect()
}

/// The distinct terms of `text`, in order of first occurrence.
fn analyze_distinct(analyzer: &mut TextAnalyzer, text: &str) -> Vec<String> {
    let folded = fold(text);
    let mut seen = HashSet::new();
    let mut terms = Vec::new();
    let mut stream = analyzer.token_stream(&folded);
    while stream.advance() {
        let term = &stream.token().text;
        if seen.insert(term.clone()) {
            terms.push(term.clone());
        }
    }
    terms
}

/// ё and е are one letter to searchers.
fn fold(text: &str) -> String {
    text.replace('ё', "е").replace('Ё', "Е")
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

    #[test]
    fn finds_inflected_russian_and_reports_coverage() {
        let index = KnowledgeIndex::build(&[
            doc("pay.md", "Как оплатить подписку", "## Оплата картой\nПодписку можно оплатить банковской картой."),
            doc("zoom.md", "Нет звука в Zoom", "## Проверьте микрофон\nВключите микрофон в настройках Zoom."),
        ])
        .unwrap();
        let result = index.search("как оплатить подписку?", 5);
        assert_eq!(result.hits[0].chunk.doc_path, "pay.md");
        assert!(result.hits[0].coverage > 0.99);

        let result = index.search("не слышно звука, микрофоны", 5);
        assert_eq!(result.hits[0].chunk.doc_path, "zoom.md");

        let result = index.search("погода в Москве", 5);
        assert!(result.hits.iter().all(|h| h.coverage < 0.5));
    }
}
