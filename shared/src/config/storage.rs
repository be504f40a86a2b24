//! Where attachment files are kept and how large one may be: as given ([`StorageSettings`]) and
//! as every process uses them ([`StorageConfig`], [`Config::max_attachment_bytes`]). The API
//! and the workers build the same storage from these, so a file one process stores is the one
//! the others read and delete.
//!
//! [`Config::max_attachment_bytes`]: super::Config::max_attachment_bytes

use clap::Args;

use crate::secret::Secret;

/// The largest `CONCIERGE_MAX_ATTACHMENT_MB`: the Bot API takes documents up to 50 MB from a
/// bot, and a larger file would reach the topic as a link only.
pub const MAX_ATTACHMENT_MB: u32 = 50;

/// The storage settings as given.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Attachments (environment variables)")]
pub struct StorageSettings {
    /// Where attachment files are kept: `local` (under CONCIERGE_DATA_DIR/attachments) or `s3`
    /// (an S3-compatible bucket, CONCIERGE_S3_*), which every API and worker process then shares.
    #[arg(long, env = "CONCIERGE_STORAGE", default_value = "local")]
    pub storage: String,
    /// The largest file accepted, in megabytes (MiB), 1 to 50: uploads from the widget and the
    /// operators' files from Telegram.
    #[arg(long, env = "CONCIERGE_MAX_ATTACHMENT_MB", default_value_t = 10)]
    pub max_attachment_mb: u32,
    /// The bucket, with CONCIERGE_STORAGE=s3 (it must exist).
    #[arg(long, env = "CONCIERGE_S3_BUCKET")]
    pub s3_bucket: Option<String>,
    /// The S3-compatible server's URL (MinIO, Ceph, a cloud's S3 API). Unset: AWS S3 of
    /// CONCIERGE_S3_REGION.
    #[arg(long, env = "CONCIERGE_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// The bucket's region.
    #[arg(long, env = "CONCIERGE_S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,
    /// The access key id. Unset (with CONCIERGE_S3_SECRET_ACCESS_KEY): the standard AWS chain
    /// (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, web identity, instance metadata).
    #[arg(long, env = "CONCIERGE_S3_ACCESS_KEY_ID", hide_env_values = true)]
    pub s3_access_key_id: Option<Secret>,
    /// The secret access key that goes with CONCIERGE_S3_ACCESS_KEY_ID.
    #[arg(long, env = "CONCIERGE_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<Secret>,
    /// Address the bucket in the path (`endpoint/bucket/key`, as MinIO wants) rather than in the
    /// host name (1 or true).
    #[arg(long, env = "CONCIERGE_S3_PATH_STYLE", default_value_t = false, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub s3_path_style: bool,
    /// Allow a plain-http CONCIERGE_S3_ENDPOINT (1 or true), for a server on loopback or a
    /// private network; refused otherwise.
    #[arg(long, env = "CONCIERGE_S3_ALLOW_HTTP", default_value_t = false, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub s3_allow_http: bool,
}

/// Where attachment files are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageConfig {
    /// Under the data folder's `attachments/`.
    Local,
    /// In an S3-compatible bucket.
    S3(S3Config),
}

/// An S3-compatible bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    pub bucket: String,
    /// `None`: AWS S3 of `region`.
    pub endpoint: Option<String>,
    pub region: String,
    /// Both keys, or neither (the standard AWS credential chain).
    pub credentials: Option<(Secret, Secret)>,
    pub path_style: bool,
    pub allow_http: bool,
}

impl StorageSettings {
    /// The storage and the largest file, in bytes.
    pub(super) fn resolve(self) -> anyhow::Result<(StorageConfig, usize)> {
        anyhow::ensure!(
            (1..=MAX_ATTACHMENT_MB).contains(&self.max_attachment_mb),
            "CONCIERGE_MAX_ATTACHMENT_MB must be between 1 and {MAX_ATTACHMENT_MB} (megabytes), not {}",
            self.max_attachment_mb
        );
        let max_bytes = self.max_attachment_mb as usize * 1024 * 1024;
        let storage = match self.storage.trim().to_ascii_lowercase().as_str() {
            "local" => StorageConfig::Local,
            "s3" => StorageConfig::S3(self.s3()?),
            other => anyhow::bail!("CONCIERGE_STORAGE={other:?} is neither `local` nor `s3`"),
        };
        Ok((storage, max_bytes))
    }

    fn s3(self) -> anyhow::Result<S3Config> {
        let bucket = self.s3_bucket.map(|b| b.trim().to_owned()).unwrap_or_default();
        anyhow::ensure!(!bucket.is_empty(), "CONCIERGE_STORAGE=s3 needs CONCIERGE_S3_BUCKET");
        let endpoint = self.s3_endpoint.map(|e| e.trim().trim_end_matches('/').to_owned()).filter(|e| !e.is_empty());
        if let Some(endpoint) = &endpoint {
            let url = url::Url::parse(endpoint)
                .map_err(|error| anyhow::anyhow!("CONCIERGE_S3_ENDPOINT={endpoint:?} is not a URL: {error}"))?;
            match url.scheme() {
                "https" => {}
                "http" if self.s3_allow_http => {}
                "http" => anyhow::bail!(
                    "CONCIERGE_S3_ENDPOINT={endpoint:?} is plain http: set CONCIERGE_S3_ALLOW_HTTP=1 for a server on \
                     loopback or a private network, or use https"
                ),
                _ => anyhow::bail!("CONCIERGE_S3_ENDPOINT={endpoint:?} must be an http(s) URL"),
            }
        }
        let region = self.s3_region.trim().to_owned();
        anyhow::ensure!(!region.is_empty(), "CONCIERGE_S3_REGION must not be empty");
        let credentials = match (self.s3_access_key_id, self.s3_secret_access_key) {
            (Some(id), Some(secret)) => Some((id, secret)),
            (None, None) => None,
            _ => anyhow::bail!(
                "set both CONCIERGE_S3_ACCESS_KEY_ID and CONCIERGE_S3_SECRET_ACCESS_KEY, or neither (the standard \
                 AWS credential chain)"
            ),
        };
        Ok(S3Config {
            bucket,
            endpoint,
            region,
            credentials,
            path_style: self.s3_path_style,
            allow_http: self.s3_allow_http,
        })
    }
}
