//! A process's live view of the knowledge base: the search index built from the stored
//! documents at some version, rebuilt in the background when a newer version is announced.
//! Readers take a snapshot (`current`) and keep answering from it while a rebuild runs.
//!
//! With an embeddings server, the snapshot holds the chunks' vectors beside the lexical index,
//! read in the same database snapshot and swapped in together; [`KnowledgeBase::search`] embeds
//! the query within its budget and answers lexically, saying why, when it cannot.

use std::{
    sync::{Arc, RwLock},
    time::Duration,
};

use anyhow::Context;
use sqlx::{PgPool, postgres::PgListener};
use tokio::sync::{Mutex, watch};
use tokio_util::sync::CancellationToken;

use super::{KnowledgeIndex, SearchOptions, SearchResult, VectorIndex, Vectors, embed::chunk_texts, store};
use crate::{
    embeddings::{EmbedError, Embedder},
    knowledge::content_hash,
};

/// How often the stored version is checked even without a notification.
const RECHECK: Duration = Duration::from_secs(30);

pub struct KnowledgeBase {
    pool: PgPool,
    /// Embeds queries, when an embeddings server is configured.
    embedder: Option<Arc<Embedder>>,
    index: RwLock<Arc<KnowledgeIndex>>,
    version: watch::Sender<i64>,
    /// One rebuild at a time.
    rebuilding: Mutex<()>,
}

impl KnowledgeBase {
    /// Build the index from the stored knowledge base.
    pub async fn load(pool: PgPool, embedder: Option<Arc<Embedder>>) -> anyhow::Result<Arc<Self>> {
        let (version, index) = build(&pool, embedder.as_deref()).await?;
        Ok(Arc::new(Self {
            pool,
            embedder,
            index: RwLock::new(Arc::new(index)),
            version: watch::channel(version).0,
            rebuilding: Mutex::new(()),
        }))
    }

    /// The index to answer from: a snapshot, unaffected by later rebuilds.
    pub fn current(&self) -> Arc<KnowledgeIndex> {
        self.index.read().expect("knowledge lock").clone()
    }

    /// The embeddings client, if any.
    pub fn embedder(&self) -> Option<&Arc<Embedder>> {
        self.embedder.as_ref()
    }

    /// Search the current snapshot: fused with the vector ranking when the snapshot has vectors
    /// and the query could be embedded in time, lexical otherwise.
    pub async fn search(&self, query: &str, options: &SearchOptions) -> Retrieval {
        let index = self.current();
        let (vector, fallback) = self.query_vector(&index, query).await;
        let result = index.search_with(query, vector.as_deref(), options);
        Retrieval { index, result, fallback }
    }

    /// The query's vector in the snapshot's space, or why there is none (`None` for both when
    /// the search is lexical by configuration).
    pub async fn query_vector(
        &self,
        index: &KnowledgeIndex,
        query: &str,
    ) -> (Option<Arc<[f32]>>, Option<&'static str>) {
        let (Some(embedder), Some(vectors)) = (&self.embedder, index.vectors()) else {
            return (None, None);
        };
        if query.trim().is_empty() {
            return (None, None);
        }
        match embedder.query(&vectors.space, query, vectors.index.dims()).await {
            Ok(vector) => (Some(vector), None),
            Err(error) => {
                if !matches!(error, EmbedError::CircuitOpen) {
                    tracing::warn!(%error, "query not embedded; searching lexically");
                }
                (None, Some(error.outcome()))
            }
        }
    }

    /// The version `current` was built from.
    pub fn version(&self) -> i64 {
        *self.version.borrow()
    }

    /// Changes whenever a rebuilt index is swapped in.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.version.subscribe()
    }

    /// Rebuild if the stored version differs from ours; returns whether it did.
    pub async fn refresh(&self) -> anyhow::Result<bool> {
        let _guard = self.rebuilding.lock().await;
        if store::version(&self.pool).await? == self.version() {
            return Ok(false);
        }
        let (version, index) = build(&self.pool, self.embedder.as_deref()).await?;
        *self.index.write().expect("knowledge lock") = Arc::new(index);
        self.version.send_replace(version);
        tracing::info!(version, "knowledge base reloaded");
        Ok(true)
    }

    /// Follow announcements of new versions until `shutdown`.
    pub fn watch(self: &Arc<Self>, shutdown: CancellationToken) {
        let kb = self.clone();
        tokio::spawn(async move {
            let mut listener = None;
            let mut recheck = tokio::time::interval(RECHECK);
            loop {
                if listener.is_none() {
                    listener = match PgListener::connect_with(&kb.pool).await {
                        Ok(mut l) => match l.listen(store::CHANNEL).await {
                            Ok(()) => Some(l),
                            Err(error) => {
                                tracing::warn!(%error, "cannot LISTEN for knowledge updates");
                                None
                            }
                        },
                        Err(error) => {
                            tracing::warn!(%error, "cannot connect to LISTEN for knowledge updates");
                            None
                        }
                    };
                }
                let notified = async {
                    match listener.as_mut() {
                        Some(l) => l.try_recv().await.map(|_| ()).map_err(|e| e.to_string()),
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = recheck.tick() => {}
                    result = notified => if let Err(error) = result {
                        tracing::warn!(%error, "knowledge listener failed; reconnecting");
                        listener = None;
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    },
                }
                if let Err(error) = kb.refresh().await {
                    tracing::error!(error = format!("{error:#}"), "knowledge reload failed; keeping the current index");
                }
            }
        });
    }
}

/// A search's ranking, the snapshot it came from, and why it was lexical when vectors exist.
pub struct Retrieval {
    pub index: Arc<KnowledgeIndex>,
    pub result: SearchResult,
    /// The embedding failure the search fell back from (`timeout`, `circuit_open`, ...).
    pub fallback: Option<&'static str>,
}

/// `embedder`: the configured model, whose answering floor applies to its own vectors only (not
/// to the previous model's, which serve while a model change is embedded).
async fn build(pool: &PgPool, embedder: Option<&Embedder>) -> anyhow::Result<(i64, KnowledgeIndex)> {
    let (version, documents, vectors) = store::load_with_vectors(pool).await.context("reading the knowledge base")?;
    let min_similarity = vectors.as_ref().and_then(|stored| {
        embedder.filter(|e| e.space().model == stored.space.model).and_then(Embedder::min_similarity)
    });
    let index = tokio::task::spawn_blocking(move || -> anyhow::Result<KnowledgeIndex> {
        let index = KnowledgeIndex::build(&documents).context("indexing the knowledge base")?;
        let Some(stored) = vectors else { return Ok(index) };
        // A chunk's texts that have no vector yet (vectors stored before labels were embedded)
        // leave the mean to the others until the next embedding run.
        let by_ord: Vec<Vec<Vec<f32>>> = index
            .chunks()
            .iter()
            .map(|chunk| {
                chunk_texts(&stored.space.passage_prefix, chunk)
                    .iter()
                    .filter_map(|text| stored.by_hash.get(&content_hash(text)).cloned())
                    .collect()
            })
            .collect();
        let missing = by_ord.iter().filter(|v| v.is_empty()).count();
        if missing > 0 {
            tracing::info!(missing, model = stored.space.model, "chunks without vectors yet are found lexically");
        }
        match VectorIndex::build_means(stored.space.model.clone(), stored.dims, by_ord) {
            Ok(vectors) => Ok(index.with_vectors(Vectors { space: stored.space, index: vectors, min_similarity })),
            // Stored vectors that do not fit are a broken set, not a broken knowledge base.
            Err(error) => {
                tracing::error!(%error, model = stored.space.model, "knowledge vectors unusable; searching lexically");
                Ok(index)
            }
        }
    })
    .await??;
    tracing::debug!(
        version,
        chunks = index.len(),
        vectors = index.vectors().map_or(0, |v| v.index.len()),
        "knowledge index built"
    );
    Ok((version, index))
}
