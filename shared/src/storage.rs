//! Where attachment files live: one interface, the local filesystem under the data folder
//! (`<data dir>/attachments/`). Keys are made by the attachments code (a uuid), never from
//! user input, so a key cannot leave the root.

use std::path::PathBuf;

use bytes::Bytes;

/// A store of files by key. Cheap to clone; one per process.
#[derive(Debug, Clone)]
pub struct Storage {
    root: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("no file stored under {0}")]
    NotFound(String),
    #[error("storage key {0:?} is not valid")]
    BadKey(String),
    #[error("storage: {0}")]
    Io(#[from] std::io::Error),
}

impl Storage {
    /// Files under `data_dir/attachments`.
    pub fn local(data_dir: &std::path::Path) -> Self {
        Self { root: data_dir.join("attachments") }
    }

    fn path(&self, key: &str) -> Result<PathBuf, StorageError> {
        let valid = !key.is_empty()
            && key.split('/').all(|part| !part.is_empty() && part != "." && part != "..")
            && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/' | '.'));
        if !valid {
            return Err(StorageError::BadKey(key.to_owned()));
        }
        Ok(self.root.join(key))
    }

    /// Store `bytes` under `key` (written to a temporary file first, then renamed: a reader never
    /// sees half a file).
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StorageError> {
        let path = self.path(key)?;
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let partial = path.with_extension(format!("part-{}", uuid::Uuid::new_v4()));
        tokio::fs::write(&partial, &bytes).await?;
        if let Err(error) = tokio::fs::rename(&partial, &path).await {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(error.into());
        }
        Ok(())
    }

    pub async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        match tokio::fs::read(self.path(key)?).await {
            Ok(bytes) => Ok(Bytes::from(bytes)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Err(StorageError::NotFound(key.to_owned())),
            Err(error) => Err(error.into()),
        }
    }

    /// Delete the file under `key`; deleting what is not there is no error.
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match tokio::fs::remove_file(self.path(key)?).await {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error.into()),
            _ => Ok(()),
        }
    }
}
