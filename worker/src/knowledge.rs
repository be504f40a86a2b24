//! The worker's knowledge base: an index built from the Markdown knowledge directory, behind
//! a lock so that a rebuilt index can replace it while jobs keep answering from the old one.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
};

use anyhow::Context;
use concierge_shared::knowledge::{KnowledgeIndex, load_dir};

pub struct KnowledgeBase {
    dir: PathBuf,
    index: RwLock<Arc<KnowledgeIndex>>,
}

impl KnowledgeBase {
    /// Load and index `dir`. Broken documents are logged by name and skipped.
    pub async fn load(dir: &Path) -> anyhow::Result<Self> {
        let index = build(dir.to_path_buf()).await?;
        Ok(Self { dir: dir.to_path_buf(), index: RwLock::new(Arc::new(index)) })
    }

    /// The index to answer from; a snapshot, unaffected by later rebuilds.
    pub fn current(&self) -> Arc<KnowledgeIndex> {
        self.index.read().expect("knowledge lock").clone()
    }

    /// Re-read the directory and swap the index in.
    pub async fn reload(&self) -> anyhow::Result<()> {
        let index = build(self.dir.clone()).await?;
        *self.index.write().expect("knowledge lock") = Arc::new(index);
        Ok(())
    }
}

async fn build(dir: PathBuf) -> anyhow::Result<KnowledgeIndex> {
    tokio::task::spawn_blocking(move || {
        let (documents, errors) =
            load_dir(&dir).with_context(|| format!("cannot read the knowledge base at {}", dir.display()))?;
        for error in &errors {
            tracing::warn!(document = error.path(), %error, "skipping a broken knowledge document");
        }
        let index = KnowledgeIndex::build(&documents).context("indexing the knowledge base")?;
        tracing::info!(documents = documents.len(), chunks = index.len(), "knowledge base indexed");
        Ok(index)
    })
    .await?
}
