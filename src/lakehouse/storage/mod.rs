//! Object storage beside iceberg's FileIO: the effective storage settings ([`resolve_storage`]:
//! `[storage]`, then `AWS_*` variables, then a profile), an OpenDAL operator built from the same
//! settings with bounded timeouts (S3, or the local file system for `file://` locations, so
//! listing and deleting is one code path for both), and the reachability probe every command
//! runs against an object-store warehouse before it starts work, so a wrong endpoint, a silent
//! server, a missing bucket or refused credentials fail at once with one clear line.

mod credentials;

pub use credentials::{CREDENTIALS_FROM, PROFILE, credentials_hint, resolve_storage};

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

/// An S3 operator for `bucket` from the effective storage settings (see [`resolve_storage`]):
/// the same endpoint, region, addressing style and credentials iceberg's FileIO uses.
pub fn s3_operator(bucket: &str, storage: &HashMap<String, String>, timeouts: Timeouts) -> Result<Operator> {
    let setting = |key: &str| storage.get(key).filter(|v| !v.is_empty());
    let mut builder = opendal::services::S3::default()
        .bucket(bucket)
        .root("/")
        .disable_config_load()
        .region(setting("s3.region").map(String::as_str).unwrap_or("us-east-1"));
    if let Some(endpoint) = setting("s3.endpoint") {
        builder = builder.endpoint(endpoint);
    }
    let path_style = setting("s3.path-style-access").is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "t" | "1" | "on" | "yes"));
    if !path_style {
        builder = builder.enable_virtual_host_style();
    }
    match (setting("s3.access-key-id"), setting("s3.secret-access-key")) {
        (Some(key), Some(secret)) => builder = builder.access_key_id(key).secret_access_key(secret),
        _ => builder = builder.skip_signature(),
    }
    if let Some(token) = setting("s3.session-token") {
        builder = builder.session_token(token);
    }
    let op = Operator::new(builder).context("cannot set up the S3 client")?.finish();
    Ok(op.layer(TimeoutLayer::new().with_timeout(timeouts.request).with_io_timeout(timeouts.request)))
}

/// An operator over the storage that holds `location` (`s3://bucket/...`, `s3a://...`,
/// `file:///...` or an absolute path) and the location's path inside it, without a leading
/// or trailing slash. [`object_uri`] maps such a path back to a URI.
pub fn location_operator(location: &str, storage: &HashMap<String, String>, timeouts: Timeouts) -> Result<(Operator, String)> {
    if location.starts_with("s3://") || location.starts_with("s3a://") {
        let (bucket, prefix) = split_s3_url(location)?;
        return Ok((s3_operator(bucket, storage, timeouts)?, prefix.trim_matches('/').to_string()));
    }
    let path = location
        .strip_prefix("file://")
        .or_else(|| location.strip_prefix("file:"))
        .filter(|p| p.starts_with('/'))
        .or_else(|| location.starts_with('/').then_some(location))
        .ok_or_else(|| anyhow!("`{location}`: not an s3:// or local file location"))?;
    let op = Operator::new(opendal::services::Fs::default().root("/"))
        .context("cannot open the local file system")?
        .finish();
    Ok((op, path.trim_matches('/').to_string()))
}

/// The URI of `path` (as [`location_operator`] returns paths) in the storage of `location`.
pub fn object_uri(location: &str, path: &str) -> String {
    match split_s3_url(location) {
        Ok((bucket, _)) => {
            let scheme = location.split("://").next().unwrap_or("s3");
            format!("{scheme}://{bucket}/{path}")
        }
        Err(_) => format!("file:///{path}"),
    }
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
