//! Object storage beside iceberg's FileIO: an OpenDAL S3 operator built from the same
//! `[storage]` settings (`s3.endpoint`, `s3.region`, credentials, falling back to the standard
//! `AWS_*` environment variables) with bounded timeouts, and the reachability probe every
//! command runs against an object-store warehouse before it starts work, so a wrong endpoint,
//! a silent server or a missing bucket fails at once with one clear line.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use opendal::Operator;
use opendal::layers::TimeoutLayer;

use super::fault::{Place, bounded};

/// How long `lake` waits on the catalog and the storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Opening a connection (catalog database, REST server, object store).
    pub connect: Duration,
    /// One request, retries included.
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            request: Duration::from_secs(30),
        }
    }
}

/// Split `s3://bucket/prefix` (also `s3a://`) into bucket and prefix.
pub fn split_s3_url(url: &str) -> Result<(&str, &str)> {
    let rest = url
        .strip_prefix("s3://")
        .or_else(|| url.strip_prefix("s3a://"))
        .ok_or_else(|| anyhow!("`{url}` is not an s3:// URL"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        bail!("`{url}`: expected s3://bucket/prefix");
    }
    Ok((bucket, prefix))
}

/// An S3 operator for `bucket` from the `[storage]` settings.
pub fn s3_operator(bucket: &str, storage: &HashMap<String, String>, timeouts: Timeouts) -> Result<Operator> {
    let setting = |key: &str, env: &str| {
        storage
            .get(key)
            .cloned()
            .or_else(|| std::env::var(env).ok())
            .filter(|v| !v.is_empty())
    };
    let mut builder = opendal::services::S3::default()
        .bucket(bucket)
        .root("/")
        .disable_config_load();
    builder = builder.region(&setting("s3.region", "AWS_REGION").unwrap_or_else(|| "us-east-1".into()));
    if let Some(endpoint) = setting("s3.endpoint", "AWS_ENDPOINT_URL") {
        builder = builder.endpoint(&endpoint);
    }
    match (
        setting("s3.access-key-id", "AWS_ACCESS_KEY_ID"),
        setting("s3.secret-access-key", "AWS_SECRET_ACCESS_KEY"),
    ) {
        (Some(key), Some(secret)) => builder = builder.access_key_id(&key).secret_access_key(&secret),
        _ => builder = builder.skip_signature(),
    }
    if let Some(token) = setting("s3.session-token", "AWS_SESSION_TOKEN") {
        builder = builder.session_token(&token);
    }
    let op = Operator::new(builder).context("cannot set up the S3 client")?.finish();
    Ok(op.layer(TimeoutLayer::new().with_timeout(timeouts.request).with_io_timeout(timeouts.request)))
}

/// Check that an object-store warehouse answers and its bucket exists (one LIST of at most
/// one key), within the connect and request timeouts. Local warehouses need no probe.
pub async fn probe_warehouse(warehouse: &str, storage: &HashMap<String, String>, timeouts: Timeouts) -> Result<()> {
    if !(warehouse.starts_with("s3://") || warehouse.starts_with("s3a://")) {
        return Ok(());
    }
    let (bucket, prefix) = split_s3_url(warehouse)?;
    let op = s3_operator(bucket, storage, timeouts)?;
    let prefix = if prefix.is_empty() || prefix.ends_with('/') {
        prefix.to_string()
    } else {
        format!("{prefix}/")
    };
    bounded(
        Place::Storage,
        format!("the object store (bucket {bucket})"),
        timeouts.connect + timeouts.request,
        async {
            op.list_with(&prefix).limit(1).await?;
            Ok(())
        },
    )
    .await
    .with_context(|| format!("cannot list {warehouse}"))
}
