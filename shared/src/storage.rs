//! Where attachment files live, behind one interface: the local filesystem under the data
//! folder (`<data dir>/attachments/`) by default, or an S3-compatible bucket
//! (`CONCIERGE_STORAGE=s3`) shared by several API and worker processes. Keys are made by the
//! attachments code (`<conversation>/<uuid>`), never from user input, and are checked here
//! all the same, so a key cannot leave the root on either backend.
//!
//! A file is written whole or not at all: the local backend writes a temporary file and
//! renames it; S3 makes an object visible only when its upload completes.

use std::{path::PathBuf, sync::Arc};

use bytes::Bytes;
use object_store::{ObjectStore, PutPayload, aws::AmazonS3Builder, path::Path as ObjectPath};

use crate::config::{Config, S3Config, StorageConfig};

/// A store of files by key. Cheap to clone; one per process.
#[derive(Debug, Clone)]
pub struct Storage {
    backend: Backend,
}

#[derive(Debug, Clone)]
enum Backend {
    Local(PathBuf),
    /// An S3-compatible bucket; object_store signs the requests and retries the transient
    /// failures.
    Object(Arc<dyn ObjectStore>),
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("no file stored under {0}")]
    NotFound(String),
    #[error("storage key {0:?} is not valid")]
    BadKey(String),
    #[error("storage: {0}")]
    Io(#[from] std::io::Error),
    #[error("object storage: {0}")]
    Object(#[from] object_store::Error),
}

/// A key of non-empty segments of `A-Z a-z 0-9 - _ .`, none of them `.` or `..`.
fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.split('/').all(|part| !part.is_empty() && part != "." && part != "..")
        && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/' | '.'))
}

impl Storage {
    /// Files under `data_dir/attachments`.
    pub fn local(data_dir: &std::path::Path) -> Self {
        Self { backend: Backend::Local(data_dir.join("attachments")) }
    }

    /// Files in an S3-compatible bucket. Nothing is sent yet: a wrong bucket or key shows at the
    /// first file (see [`Storage::check`]).
    pub fn s3(config: &S3Config) -> anyhow::Result<Self> {
        let mut builder = match &config.credentials {
            Some((id, secret)) => {
                AmazonS3Builder::new().with_access_key_id(id.expose()).with_secret_access_key(secret.expose())
            }
            // The standard AWS chain: AWS_ACCESS_KEY_ID and friends, web identity, instance
            // metadata.
            None => AmazonS3Builder::from_env(),
        };
        builder = builder
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_virtual_hosted_style_request(!config.path_style)
            .with_allow_http(config.allow_http);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        let store = builder
            .build()
            .map_err(|error| anyhow::anyhow!("the S3 storage settings (CONCIERGE_S3_*) do not work: {error}"))?;
        Ok(Self { backend: Backend::Object(Arc::new(store)) })
    }

    /// The storage `config` names.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        match &config.storage {
            StorageConfig::Local => Ok(Self::local(&config.data_dir)),
            StorageConfig::S3(s3) => Self::s3(s3),
        }
    }

    /// Whether the storage answers: the local folder can be made, or the bucket can be listed
    /// (under a prefix nobody writes) with these credentials. Processes check this at
    /// start-up, so a wrong bucket, endpoint or key is said then, not at the first upload.
    pub async fn check(&self) -> anyhow::Result<()> {
        use anyhow::Context as _;
        match &self.backend {
            Backend::Local(root) => tokio::fs::create_dir_all(root)
                .await
                .with_context(|| format!("the attachment folder {} cannot be made", root.display())),
            Backend::Object(store) => {
                let prefix = ObjectPath::from(".concierge-check");
                store.list_with_delimiter(Some(&prefix)).await.map(|_| ()).map_err(|error| {
                    anyhow::anyhow!("the attachment bucket does not answer (check CONCIERGE_S3_*): {error}")
                })
            }
        }
    }

    fn path(root: &std::path::Path, key: &str) -> Result<PathBuf, StorageError> {
        if !valid_key(key) {
            return Err(StorageError::BadKey(key.to_owned()));
        }
        Ok(root.join(key))
    }

    fn object_path(key: &str) -> Result<ObjectPath, StorageError> {
        if !valid_key(key) {
            return Err(StorageError::BadKey(key.to_owned()));
        }
        ObjectPath::parse(key).map_err(|_| StorageError::BadKey(key.to_owned()))
    }

    /// Store `bytes` under `key`; a reader never sees half a file.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StorageError> {
        match &self.backend {
            Backend::Local(root) => {
                let path = Self::path(root, key)?;
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
            Backend::Object(store) => {
                store.put(&Self::object_path(key)?, PutPayload::from(bytes)).await?;
                Ok(())
            }
        }
    }

    pub async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        match &self.backend {
            Backend::Local(root) => match tokio::fs::read(Self::path(root, key)?).await {
                Ok(bytes) => Ok(Bytes::from(bytes)),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    Err(StorageError::NotFound(key.to_owned()))
                }
                Err(error) => Err(error.into()),
            },
            Backend::Object(store) => {
                let path = Self::object_path(key)?;
                let read = async { store.get(&path).await?.bytes().await };
                match read.await {
                    Ok(bytes) => Ok(bytes),
                    Err(object_store::Error::NotFound { .. }) => Err(StorageError::NotFound(key.to_owned())),
                    Err(error) => Err(error.into()),
                }
            }
        }
    }

    /// Delete the file under `key`; deleting what is not there is no error.
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match &self.backend {
            Backend::Local(root) => match tokio::fs::remove_file(Self::path(root, key)?).await {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error.into()),
                _ => Ok(()),
            },
            Backend::Object(store) => match store.delete(&Self::object_path(key)?).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(error) => Err(error.into()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_files_are_put_read_and_deleted_by_key_and_bad_keys_refused() {
        let dir = std::env::temp_dir().join(format!("concierge-storage-{}", uuid::Uuid::new_v4()));
        let storage = Storage::local(&dir);
        storage.put("c/1", Bytes::from_static(b"one")).await.unwrap();
        assert_eq!(storage.get("c/1").await.unwrap(), Bytes::from_static(b"one"));
        storage.delete("c/1").await.unwrap();
        storage.delete("c/1").await.unwrap();
        assert!(matches!(storage.get("c/1").await, Err(StorageError::NotFound(_))));
        for key in ["", "../x", "c//1", "c/./1", "/etc/passwd", "c/1?x"] {
            assert!(matches!(storage.put(key, Bytes::new()).await, Err(StorageError::BadKey(_))), "{key}");
        }
        storage.check().await.unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }
}
