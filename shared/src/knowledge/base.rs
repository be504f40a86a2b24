//! A process's live view of the knowledge base: the search index built from the stored
//! documents at some version, rebuilt in the background when a newer version is announced.
//! Readers take a snapshot (`current`) and keep answering from it while a rebuild runs.

use std::{
    sync::{Arc, RwLock},
    time::Duration,
};

use anyhow::Context;
use sqlx::{PgPool, postgres::PgListener};
use tokio::sync::{Mutex, watch};
use tokio_util::sync::CancellationToken;

use super::{KnowledgeIndex, store};

/// How often the stored version is checked even without a notification.
const RECHECK: Duration = Duration::from_secs(30);

pub struct KnowledgeBase {
    pool: PgPool,
    index: RwLock<Arc<KnowledgeIndex>>,
    version: watch::Sender<i64>,
    /// One rebuild at a time.
    rebuilding: Mutex<()>,
}

impl KnowledgeBase {
    /// Build the index from the stored knowledge base.
    pub async fn load(pool: PgPool) -> anyhow::Result<Arc<Self>> {
        let (version, index) = build(&pool).await?;
        Ok(Arc::new(Self {
            pool,
            index: RwLock::new(Arc::new(index)),
            version: watch::channel(version).0,
            rebuilding: Mutex::new(()),
        }))
    }

    /// The index to answer from: a snapshot, unaffected by later rebuilds.
    pub fn current(&self) -> Arc<KnowledgeIndex> {
        self.index.read().expect("knowledge lock").clone()
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
        let (version, index) = build(&self.pool).await?;
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

async fn build(pool: &PgPool) -> anyhow::Result<(i64, KnowledgeIndex)> {
    let (version, documents) = store::load(pool).await.context("reading the knowledge base")?;
    let index = tokio::task::spawn_blocking(move || KnowledgeIndex::build(&documents))
        .await?
        .context("indexing the knowledge base")?;
    tracing::debug!(version, chunks = index.len(), "knowledge index built");
    Ok((version, index))
}
