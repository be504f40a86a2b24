//! The semantic side of knowledge search: the embedding vectors of a [`super::KnowledgeIndex`]'s
//! chunks, held in memory, and the chunks nearest to a query vector.
//!
//! A chunk may be embedded as several texts (its passage and its label): its row is the mean of
//! their L2-normalised vectors, so a unit query's dot product with it is the mean of the texts'
//! cosine similarities. Rows live in one contiguous buffer, row by row. Up to [`EXACT_LIMIT`]
//! vectors every search scans them all (exact, and fast enough at that size); above it `build`
//! also constructs an HNSW graph over the same buffer and searches go through it (approximate:
//! recall@10 ≥ 0.95 against the exact scan, and a few hundred microseconds instead of a full
//! scan).
//!
//! Invariant: every row of the buffer has exactly `dims` components and is the mean of unit
//! vectors (length at most 1), and `ords[row]` is the chunk ordinal it belongs to. The graph,
//! when present, is built with a fixed seed on one thread, so the same input always gives the
//! same graph and the same results.

use std::{
    cmp::{Ordering, Reverse},
    collections::BinaryHeap,
    sync::Arc,
};

use instant_distance::{Builder, HnswMap, Point, Search};

/// Up to this many vectors, search is an exact scan; above it, an HNSW graph is built.
pub const EXACT_LIMIT: usize = 20_000;

/// HNSW breadth while inserting: higher builds a better graph, more slowly.
const EF_CONSTRUCTION: usize = 40;
/// HNSW breadth while searching: the candidates kept, and the most results the graph gives.
/// A search for more results than this scans exactly.
const EF_SEARCH: usize = 100;
/// Seed of the HNSW layer assignment, fixed so that every process builds the same graph.
const SEED: u64 = 13;
/// instant-distance's `M`: neighbours per node on the upper layers, twice that on layer zero.
/// Only used to estimate the graph's memory.
const GRAPH_M: usize = 32;

/// Vectors of the chunks of one `KnowledgeIndex`, by chunk ordinal (the order of chunks in
/// `KnowledgeIndex::build`: documents in order, their chunks in order).
///
/// Built once per knowledge version, beside the tantivy index, and shared read-only.
pub struct VectorIndex {
    model: String,
    dims: usize,
    /// Means of unit vectors, `dims` floats per row, shared with the graph's points.
    rows: Arc<[f32]>,
    /// Chunk ordinal of each row: chunks without a vector have no row.
    ords: Vec<u32>,
    /// The approximate index, when there are more than the exact limit of rows. Its values are
    /// row numbers.
    graph: Option<HnswMap<Row, u32>>,
}

/// Why vectors could not be indexed or searched.
#[derive(Debug, thiserror::Error)]
pub enum VectorError {
    #[error("the vector has {got} dimensions, the index {expected}")]
    Dimensions { expected: usize, got: usize },
    #[error("the vector is zero and has no direction")]
    Zero,
    #[error("the vector has a component that is not a finite number")]
    NotFinite,
    /// A chunk's stored vector is unusable; `ord` says which chunk.
    #[error("the vector of chunk {ord} is unusable")]
    Chunk {
        ord: usize,
        #[source]
        source: Box<VectorError>,
    },
    #[error("more chunks than a vector index can number")]
    TooMany,
    #[error("could not start the thread that builds the vector graph")]
    Thread(#[from] rayon::ThreadPoolBuildError),
}

impl VectorIndex {
    /// `vectors[ord]` is chunk `ord`'s embedding, or None if it has none (not embedded yet).
    /// All present vectors must have `dims` components, else Err. Vectors are L2-normalised
    /// on the way in (a zero vector is an Err).
    ///
    /// CPU-bound (seconds above the exact limit): call it off the async runtime.
    pub fn build(model: String, dims: usize, vectors: Vec<Option<Vec<f32>>>) -> Result<Self, VectorError> {
        let texts = vectors.into_iter().map(|vector| vector.into_iter().collect()).collect();
        Self::build_with_limit(model, dims, texts, EXACT_LIMIT)
    }

    /// `build` for chunks embedded as several texts: `texts[ord]` holds the vectors of chunk
    /// `ord`'s texts (empty: no vector yet), and its row is the mean of their unit vectors. A
    /// similarity is then the mean of the texts' cosine similarities to the query.
    pub fn build_means(model: String, dims: usize, texts: Vec<Vec<Vec<f32>>>) -> Result<Self, VectorError> {
        Self::build_with_limit(model, dims, texts, EXACT_LIMIT)
    }

    /// `build` with the number of vectors above which the graph is built, so that tests can
    /// exercise the graph on small data.
    fn build_with_limit(
        model: String,
        dims: usize,
        texts: Vec<Vec<Vec<f32>>>,
        exact_limit: usize,
    ) -> Result<Self, VectorError> {
        u32::try_from(texts.len()).map_err(|_| VectorError::TooMany)?;
        let present = texts.iter().filter(|vectors| !vectors.is_empty()).count();
        let mut rows = Vec::with_capacity(present * dims);
        let mut ords = Vec::with_capacity(present);
        for (ord, vectors) in texts.into_iter().enumerate() {
            if vectors.is_empty() {
                continue;
            }
            let share = 1.0 / vectors.len() as f32;
            let mut row = vec![0.0f32; dims];
            for mut vector in vectors {
                normalise(&mut vector, dims).map_err(|source| VectorError::Chunk { ord, source: Box::new(source) })?;
                row.iter_mut().zip(&vector).for_each(|(sum, x)| *sum += share * x);
            }
            rows.extend_from_slice(&row);
            ords.push(ord as u32);
        }
        let rows: Arc<[f32]> = rows.into();
        let graph = if ords.len() > exact_limit { Some(build_graph(&rows, dims, ords.len())?) } else { None };
        Ok(Self { model, dims, rows, ords, graph })
    }

    /// The embedding model the vectors came from: a query must be embedded with the same one.
    pub fn model(&self) -> &str {
        &self.model
    }

    pub fn dims(&self) -> usize {
        self.dims
    }

    /// Chunks that have a vector.
    pub fn len(&self) -> usize {
        self.ords.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ords.is_empty()
    }

    /// Whether searches go through the approximate graph rather than an exact scan.
    pub fn is_approximate(&self) -> bool {
        self.graph.is_some()
    }

    /// Bytes the vectors (and any ANN graph) take in memory, for the benchmark. The graph's
    /// share is computed from its layout (neighbour lists per layer), not measured.
    pub fn memory_bytes(&self) -> usize {
        let vectors = std::mem::size_of_val(&*self.rows) + self.ords.capacity() * size_of::<u32>();
        vectors + self.graph.as_ref().map_or(0, |_| graph_bytes(self.ords.len()))
    }

    /// The `limit` chunks most similar to `query` (the mean cosine similarity of each chunk's
    /// texts, -1..=1), best first, as (ord, similarity). A query of the wrong dimension is an Err
    /// (VectorError::Dimensions). Equal similarities rank the lower ordinal first.
    pub fn search(&self, query: &[f32], limit: usize) -> Result<Vec<(usize, f32)>, VectorError> {
        let mut query = query.to_vec();
        normalise(&mut query, self.dims)?;
        if limit == 0 || self.is_empty() {
            return Ok(Vec::new());
        }
        let best = match &self.graph {
            Some(graph) if limit <= EF_SEARCH => self.approximate(graph, query, limit),
            _ => self.exact(&query, limit),
        };
        Ok(self.ordinals(best))
    }

    /// `search` by a full scan even where the graph would answer: the reference that the
    /// graph's recall is measured against.
    pub fn search_exact(&self, query: &[f32], limit: usize) -> Result<Vec<(usize, f32)>, VectorError> {
        let mut query = query.to_vec();
        normalise(&mut query, self.dims)?;
        if limit == 0 || self.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.ordinals(self.exact(&query, limit)))
    }

    fn ordinals(&self, best: Vec<Scored>) -> Vec<(usize, f32)> {
        best.into_iter().map(|scored| (self.ords[scored.row as usize] as usize, scored.similarity)).collect()
    }

    /// Every row scored, the best `limit` kept in a bounded min-heap.
    fn exact(&self, query: &[f32], limit: usize) -> Vec<Scored> {
        let mut best = BinaryHeap::with_capacity(limit + 1);
        for (row, vector) in self.rows.chunks_exact(self.dims).enumerate() {
            let scored = Scored { similarity: dot(query, vector), row: row as u32 };
            if best.len() < limit {
                best.push(Reverse(scored));
            } else if best.peek().is_some_and(|Reverse(worst)| scored > *worst) {
                best.pop();
                best.push(Reverse(scored));
            }
        }
        let mut best: Vec<Scored> = best.into_iter().map(|Reverse(scored)| scored).collect();
        best.sort_unstable_by(|a, b| b.cmp(a));
        best
    }

    /// The graph's nearest rows, rescored exactly (the graph works in distances).
    fn approximate(&self, graph: &HnswMap<Row, u32>, query: Vec<f32>, limit: usize) -> Vec<Scored> {
        let dims = self.dims;
        let query = Row { data: query.into(), start: 0, dims };
        let mut search = Search::default();
        let mut best: Vec<Scored> = graph
            .search(&query, &mut search)
            .map(|item| {
                let row = *item.value;
                let start = row as usize * dims;
                Scored { similarity: dot(query.vector(), &self.rows[start..start + dims]), row }
            })
            .collect();
        best.sort_unstable_by(|a, b| b.cmp(a));
        best.truncate(limit);
        best
    }
}

impl std::fmt::Debug for VectorIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorIndex")
            .field("model", &self.model)
            .field("dims", &self.dims)
            .field("len", &self.len())
            .field("approximate", &self.is_approximate())
            .finish()
    }
}

/// A row and its similarity to the query; orders by similarity, then by lower row first.
#[derive(Debug, Clone, Copy)]
struct Scored {
    similarity: f32,
    row: u32,
}

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.similarity.total_cmp(&other.similarity).then_with(|| other.row.cmp(&self.row))
    }
}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Scored {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Scored {}

/// A graph point: one row of the shared buffer (or a query in a buffer of its own), so the graph
/// holds no second copy of the vectors.
#[derive(Clone)]
struct Row {
    data: Arc<[f32]>,
    start: usize,
    dims: usize,
}

impl Row {
    fn vector(&self) -> &[f32] {
        &self.data[self.start..self.start + self.dims]
    }
}

impl Point for Row {
    /// Cosine distance of unit vectors, 0..=2; for means of unit vectors, one minus their dot
    /// product, which orders rows by the mean similarity to a unit query.
    fn distance(&self, other: &Self) -> f32 {
        1.0 - dot(self.vector(), other.vector())
    }
}

/// The HNSW graph over all rows, its values the row numbers. Built on a one-thread pool: the
/// crate inserts in parallel otherwise, and the graph would depend on thread timing.
fn build_graph(rows: &Arc<[f32]>, dims: usize, len: usize) -> Result<HnswMap<Row, u32>, VectorError> {
    let points: Vec<Row> = (0..len).map(|row| Row { data: Arc::clone(rows), start: row * dims, dims }).collect();
    let values: Vec<u32> = (0..len as u32).collect();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    Ok(pool.install(|| {
        Builder::default().seed(SEED).ef_construction(EF_CONSTRUCTION).ef_search(EF_SEARCH).build(points, values)
    }))
}

/// Memory of an instant-distance graph over `len` points: 2·M neighbour ids per point on layer
/// zero, M per point on each upper layer (whose sizes shrink by mL = 1/ln M, as the crate lays
/// them out), one `Row` and one value per point.
fn graph_bytes(len: usize) -> usize {
    let ml = 1.0 / (GRAPH_M as f32).ln();
    let mut upper = 0;
    let mut num = len;
    loop {
        let next = (num as f32 * ml) as usize;
        if next < GRAPH_M {
            break;
        }
        upper += next;
        num = next;
    }
    let id = size_of::<u32>();
    len * (2 * GRAPH_M * id + size_of::<Row>() + size_of::<u32>()) + upper * GRAPH_M * id
}

/// Checks `vector` against the index's dimensions and scales it to unit length.
fn normalise(vector: &mut [f32], dims: usize) -> Result<(), VectorError> {
    if vector.len() != dims {
        return Err(VectorError::Dimensions { expected: dims, got: vector.len() });
    }
    if !vector.iter().all(|x| x.is_finite()) {
        return Err(VectorError::NotFinite);
    }
    let norm = dot(vector, vector).sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return Err(VectorError::Zero);
    }
    vector.iter_mut().for_each(|x| *x /= norm);
    Ok(())
}

/// Dot product in eight independent lanes, so that the compiler turns it into SIMD
/// multiply-adds without reassociating a single running sum.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8.remainder().iter().zip(b8.remainder()).map(|(x, y)| x * y).sum();
    let mut lanes = [0.0f32; 8];
    for (x, y) in a8.zip(b8) {
        for lane in 0..8 {
            lanes[lane] += x[lane] * y[lane];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng, rngs::StdRng};

    use super::*;

    fn index(vectors: Vec<Option<Vec<f32>>>) -> VectorIndex {
        VectorIndex::build("test-model".into(), 3, vectors).expect("valid vectors")
    }

    /// `count` vectors around `clusters` random centres, each centre's spread about as wide as
    /// the distance between centres, so that neighbours are not trivially separated.
    fn clustered(rng: &mut StdRng, count: usize, clusters: usize, dims: usize) -> Vec<Vec<f32>> {
        let centres: Vec<Vec<f32>> =
            (0..clusters).map(|_| (0..dims).map(|_| rng.random_range(-1.0..1.0)).collect()).collect();
        (0..count)
            .map(|_| {
                let centre = &centres[rng.random_range(0..clusters)];
                centre.iter().map(|c| c + rng.random_range(-0.6..0.6)).collect()
            })
            .collect()
    }

    #[test]
    fn exact_search_ranks_by_cosine_and_skips_missing_vectors() {
        let index = index(vec![
            Some(vec![1.0, 0.0, 0.0]),
            None,
            Some(vec![0.0, 5.0, 0.0]),
            Some(vec![2.0, 2.0, 0.0]),
            None,
            Some(vec![-1.0, 0.0, 0.0]),
        ]);
        assert_eq!(index.len(), 4);
        assert!(!index.is_approximate());
        assert_eq!(index.model(), "test-model");
        assert_eq!(index.dims(), 3);

        let hits = index.search(&[3.0, 1.0, 0.0], 10).unwrap();
        let ords: Vec<usize> = hits.iter().map(|&(ord, _)| ord).collect();
        assert_eq!(ords, [0, 3, 2, 5]);
        let expected = [3.0 / 10f32.sqrt(), 4.0 / 20f32.sqrt(), 1.0 / 10f32.sqrt(), -3.0 / 10f32.sqrt()];
        for ((_, similarity), expected) in hits.iter().zip(expected) {
            assert!((similarity - expected).abs() < 1e-5, "{similarity} != {expected}");
        }
        assert_eq!(index.search(&[3.0, 1.0, 0.0], 2).unwrap().len(), 2);
        assert!(index.search(&[3.0, 1.0, 0.0], 0).unwrap().is_empty());
    }

    #[test]
    fn exact_top_k_matches_a_full_sort() {
        let mut rng = StdRng::seed_from_u64(7);
        let vectors = clustered(&mut rng, 500, 10, 19);
        let index = VectorIndex::build("m".into(), 19, vectors.iter().cloned().map(Some).collect()).unwrap();
        let query: Vec<f32> = (0..19).map(|_| rng.random_range(-1.0..1.0)).collect();
        let norm = |v: &[f32]| dot(v, v).sqrt();
        let mut all: Vec<(usize, f32)> =
            vectors.iter().enumerate().map(|(ord, v)| (ord, dot(v, &query) / norm(v) / norm(&query))).collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1));
        let hits = index.search(&query, 25).unwrap();
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), all[..25].iter().map(|h| h.0).collect::<Vec<_>>());
        for (hit, want) in hits.iter().zip(&all) {
            assert!((hit.1 - want.1).abs() < 1e-5);
        }
    }

    #[test]
    fn vectors_are_normalised_and_ties_keep_chunk_order() {
        let index = index(vec![Some(vec![0.0, 0.0, 10.0]), Some(vec![0.0, 0.0, 0.5]), Some(vec![0.0, 3.0, 4.0])]);
        let hits = index.search(&[0.0, 0.0, 2.0], 3).unwrap();
        assert_eq!(hits[0].0, 0);
        assert_eq!(hits[1].0, 1);
        assert!((hits[0].1 - 1.0).abs() < 1e-6 && (hits[1].1 - 1.0).abs() < 1e-6);
        assert!((hits[2].1 - 0.8).abs() < 1e-6);
        assert_eq!(index.memory_bytes(), 3 * 3 * 4 + 3 * 4);
    }

    #[test]
    fn wrong_dimensions_zero_and_non_finite_vectors_are_errors() {
        let err =
            VectorIndex::build("m".into(), 3, vec![Some(vec![1.0, 0.0, 0.0]), None, Some(vec![1.0, 2.0])]).unwrap_err();
        assert!(
            matches!(&err, VectorError::Chunk { ord: 2, source } if matches!(**source, VectorError::Dimensions { expected: 3, got: 2 })),
            "{err:?}"
        );
        let err = VectorIndex::build("m".into(), 3, vec![Some(vec![0.0; 3])]).unwrap_err();
        assert!(matches!(&err, VectorError::Chunk { ord: 0, source } if matches!(**source, VectorError::Zero)));
        let err = VectorIndex::build("m".into(), 3, vec![Some(vec![f32::NAN, 1.0, 0.0])]).unwrap_err();
        assert!(matches!(&err, VectorError::Chunk { ord: 0, source } if matches!(**source, VectorError::NotFinite)));

        let index = index(vec![Some(vec![1.0, 0.0, 0.0])]);
        assert!(matches!(index.search(&[1.0, 0.0], 5), Err(VectorError::Dimensions { expected: 3, got: 2 })));
        assert!(matches!(index.search(&[0.0; 3], 5), Err(VectorError::Zero)));
        let empty = VectorIndex::build("m".into(), 3, vec![None, None]).unwrap();
        assert!(empty.is_empty());
        assert!(empty.search(&[1.0, 0.0, 0.0], 5).unwrap().is_empty());
        assert!(matches!(empty.search(&[1.0; 4], 5), Err(VectorError::Dimensions { .. })));
    }

    #[test]
    fn a_chunk_embedded_as_several_texts_scores_their_mean_similarity() {
        // Chunk 0: a passage along x and a title along y; chunk 1: one text between them.
        let index = VectorIndex::build_means(
            "m".into(),
            3,
            vec![vec![vec![2.0, 0.0, 0.0], vec![0.0, 3.0, 0.0]], vec![vec![1.0, 1.0, 1.0]], Vec::new()],
        )
        .unwrap();
        assert_eq!(index.len(), 2, "a chunk without texts has no row");
        let hits = index.search(&[0.0, 1.0, 0.0], 3).unwrap();
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), [1, 0], "{hits:?}");
        assert!((hits[0].1 - 1.0 / 3f32.sqrt()).abs() < 1e-6, "{hits:?}");
        assert!((hits[1].1 - 0.5).abs() < 1e-6, "the mean of 0 and 1: {hits:?}");
    }

    #[test]
    fn approximate_search_recalls_the_exact_top_ten() {
        // Small enough to build twice in a debug build within seconds; the graph is forced by
        // lowering the exact limit.
        const COUNT: usize = 400;
        const DIMS: usize = 32;
        let mut rng = StdRng::seed_from_u64(2026);
        let mut vectors: Vec<Vec<Vec<f32>>> =
            clustered(&mut rng, COUNT, 20, DIMS).into_iter().map(|v| vec![v]).collect();
        vectors[17] = Vec::new();
        let exact = VectorIndex::build_with_limit("m".into(), DIMS, vectors.clone(), usize::MAX).unwrap();
        let ann = VectorIndex::build_with_limit("m".into(), DIMS, vectors.clone(), COUNT / 2).unwrap();
        assert!(ann.is_approximate() && !exact.is_approximate());
        assert_eq!(ann.len(), COUNT - 1);
        assert!(ann.memory_bytes() > exact.memory_bytes());

        let queries = clustered(&mut rng, 100, 20, DIMS);
        let mut found = 0;
        for query in &queries {
            let want: Vec<usize> = exact.search(query, 10).unwrap().into_iter().map(|h| h.0).collect();
            let got = ann.search(query, 10).unwrap();
            assert_eq!(got.len(), 10);
            assert!(got.windows(2).all(|w| w[0].1 >= w[1].1));
            assert!(got.iter().all(|h| h.0 != 17));
            found += got.iter().filter(|h| want.contains(&h.0)).count();
        }
        let recall = found as f64 / (queries.len() * 10) as f64;
        assert!(recall >= 0.95, "recall@10 {recall}");

        let again = VectorIndex::build_with_limit("m".into(), DIMS, vectors, COUNT / 2).unwrap();
        for query in queries.iter().take(20) {
            assert_eq!(again.search(query, 10).unwrap(), ann.search(query, 10).unwrap());
        }
        assert_eq!(ann.search(&queries[0], 150).unwrap()[..10], exact.search(&queries[0], 150).unwrap()[..10]);
        assert_eq!(ann.search_exact(&queries[0], 10).unwrap(), exact.search(&queries[0], 10).unwrap());
    }
}
