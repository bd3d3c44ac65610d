//! The last, catalog-specific step of a commit: turning "base metadata + requirements +
//! updates" into the table's new current metadata.
//!
//! The snapshot producer ([`super::commit`]) writes data files, manifests and the manifest list
//! and describes the rest as [`TableUpdate`]s (`AddSnapshot`, `SetSnapshotRef`,
//! `AddSchema` + `SetCurrentSchema`, `AddSpec` + `SetDefaultSpec`, `RemoveSnapshots`, ...) with
//! [`TableRequirement`]s on the base (`AssertRefSnapshotId` on `main`, and the schema or spec
//! id when those change). A [`PointerStore`] applies them:
//!
//! - [`SqlPointerStore`] (SQLite, Postgres: the JDBC `iceberg_tables` layout) applies the updates
//!   to the base with `TableMetadataBuilder`, writes the next metadata file and swaps the
//!   table's `metadata_location` with compare-and-swap (`UPDATE ... WHERE metadata_location =
//!   <base>`). The swap is what enforces the requirements: it succeeds only while the catalog
//!   still points at the base the updates were computed from. When the swap itself fails, the
//!   pointer is read back: our new file means committed, the base means a certain failure,
//!   anything else (or no answer) an unknown outcome, and the new metadata file is kept.
//! - A REST catalog plugs in here as another implementation: POST a `CommitTableRequest {
//!   identifier, requirements, updates }` (`iceberg-catalog-rest` types) to
//!   `/v1/{prefix}/namespaces/{ns}/tables/{table}`; 200 → `Committed` with the returned
//!   `metadata-location`, 409 → `Conflict` (the producer reloads and retries), 5xx or a lost
//!   answer → `UnknownOutcome` (the caller reloads and looks for its own marker, e.g. an ingest
//!   flush id, in the snapshot summaries). The server writes the metadata file. This is
//!   [`RestPointerStore`]; it adds `assert-table-uuid` to the producer's requirements.

use std::str::FromStr;
use std::sync::Arc;

use iceberg::spec::TableMetadata;
use iceberg::table::Table;
use iceberg::{MetadataLocation, TableIdent, TableRequirement, TableUpdate};
use sqlx::{AnyPool, Row};

use super::commit::Error;
use super::rest_auth::{Refused, RestAuth};

/// What a pointer store did with a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitResult {
    /// The table's current metadata is now this file.
    Committed { metadata_location: String },
    /// Another writer committed since the base: nothing changed; reload and try again.
    Conflict,
}

/// The catalog-specific step of a commit (see the module docs).
#[async_trait::async_trait]
pub trait PointerStore: Send + Sync + std::fmt::Debug {
    /// Make `updates`, applied to `base`'s metadata, the table's current metadata, provided
    /// `requirements` still hold.
    async fn commit(
        &self,
        base: &Table,
        requirements: &[TableRequirement],
        updates: Vec<TableUpdate>,
    ) -> Result<CommitResult, Error>;
}

/// Compare-and-swap of `iceberg_tables.metadata_location` in a SQL catalog.
#[derive(Debug, Clone)]
pub struct SqlPointerStore {
    pool: AnyPool,
    catalog_name: String,
    postgres: bool,
}

impl SqlPointerStore {
    pub fn new(pool: AnyPool, catalog_name: String, postgres: bool) -> Self {
        SqlPointerStore {
            pool,
            catalog_name,
            postgres,
        }
    }

    /// Compare-and-swap the table's metadata pointer. `Ok(false)` means another writer won.
    async fn swap(&self, ident: &TableIdent, expected: &str, new: &str) -> Result<bool, sqlx::Error> {
        let sql = if self.postgres {
            "UPDATE iceberg_tables SET metadata_location = $1, previous_metadata_location = $2 \
             WHERE catalog_name = $3 AND table_namespace = $4 AND table_name = $5 \
             AND (iceberg_type = 'TABLE' OR iceberg_type IS NULL) AND metadata_location = $6"
        } else {
            "UPDATE iceberg_tables SET metadata_location = ?, previous_metadata_location = ? \
             WHERE catalog_name = ? AND table_namespace = ? AND table_name = ? \
             AND (iceberg_type = 'TABLE' OR iceberg_type IS NULL) AND metadata_location = ?"
        };
        let result = sqlx::query(sql)
            .bind(new)
            .bind(expected)
            .bind(self.catalog_name.as_str())
            .bind(ident.namespace().join("."))
            .bind(ident.name())
            .bind(expected)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    /// The metadata location the catalog currently records for `ident`.
    pub async fn pointer(&self, ident: &TableIdent) -> Result<Option<String>, sqlx::Error> {
        let sql = if self.postgres {
            "SELECT metadata_location FROM iceberg_tables WHERE catalog_name = $1 AND table_namespace = $2 AND table_name = $3"
        } else {
            "SELECT metadata_location FROM iceberg_tables WHERE catalog_name = ? AND table_namespace = ? AND table_name = ?"
        };
        let row = sqlx::query(sql)
            .bind(self.catalog_name.as_str())
            .bind(ident.namespace().join("."))
            .bind(ident.name())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.and_then(|r| r.try_get::<String, _>(0).ok()))
    }
}

/// `updates` applied to `base`'s metadata, after checking `requirements` against it, and the
/// metadata files that left the metadata log (`write.metadata.previous-versions-max`).
pub fn apply_updates(
    base: &Table,
    base_location: &str,
    requirements: &[TableRequirement],
    updates: Vec<TableUpdate>,
) -> Result<(TableMetadata, Vec<String>), Error> {
    for requirement in requirements {
        requirement.check(Some(base.metadata()))?;
    }
    let mut builder = base.metadata().clone().into_builder(Some(base_location.to_string()));
    for update in updates {
        builder = update.apply(builder)?;
    }
    let built = builder.build()?;
    let expired = built.expired_metadata_logs.into_iter().map(|l| l.metadata_file).collect();
    Ok((built.metadata, expired))
}

/// The table property that makes a commit delete the metadata files leaving the log.
pub const DELETE_AFTER_COMMIT: &str = "write.metadata.delete-after-commit.enabled";

/// The metadata-file properties of the tables `lake` creates: keep the last 100 metadata files
/// and delete older ones at commit (Iceberg's default keeps every file, which a source
/// committing every few seconds grows without bound).
pub fn created_table_properties() -> [(&'static str, &'static str); 2] {
    [(DELETE_AFTER_COMMIT, "true"), ("write.metadata.previous-versions-max", "100")]
}

/// After a commit moved the pointer: delete the metadata files that left the log, when the
/// table asks for it. A file that cannot be removed is only a warning (orphan removal finds it).
async fn delete_expired(base: &Table, metadata: &TableMetadata, expired: &[String]) {
    let enabled = metadata
        .properties()
        .get(DELETE_AFTER_COMMIT)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if !enabled {
        return;
    }
    for path in expired {
        if let Err(e) = base.file_io().delete(path).await {
            tracing::warn!(path, error = %e, "could not remove a metadata file that left the metadata log");
        }
    }
}

#[async_trait::async_trait]
impl PointerStore for SqlPointerStore {
    async fn commit(
        &self,
        base: &Table,
        requirements: &[TableRequirement],
        updates: Vec<TableUpdate>,
    ) -> Result<CommitResult, Error> {
        let ident = base.identifier();
        let base_location = base
            .metadata_location()
            .ok_or_else(|| Error::Invalid(format!("table {ident} has no metadata location")))?
            .to_string();
        let (new_metadata, expired) = apply_updates(base, &base_location, requirements, updates)?;
        let new_location = MetadataLocation::from_str(&base_location)?
            .with_next_version()
            .with_new_metadata(&new_metadata);
        new_metadata.write_to(base.file_io(), &new_location).await?;
        let new_location = new_location.to_string();
        match self.swap(ident, &base_location, &new_location).await {
            Ok(true) => {
                delete_expired(base, &new_metadata, &expired).await;
                Ok(CommitResult::Committed {
                    metadata_location: new_location,
                })
            }
            Ok(false) => {
                discard(base, &new_location).await;
                Ok(CommitResult::Conflict)
            }
            Err(e) => match self.pointer(ident).await {
                Ok(Some(p)) if p == new_location => {
                    delete_expired(base, &new_metadata, &expired).await;
                    Ok(CommitResult::Committed {
                        metadata_location: new_location,
                    })
                }
                Ok(Some(p)) if p == base_location => {
                    discard(base, &new_location).await;
                    Err(Error::catalog(format!("cannot update the catalog pointer of {ident}"), e))
                }
                _ => Err(Error::UnknownOutcome(format!(
                    "the catalog update of {ident} failed and its outcome is unknown (cannot update the catalog pointer of {ident}: {e}); check `lake show {ident}` before running again"
                ))),
            },
        }
    }
}

/// An Iceberg REST catalog's commit endpoint: the server checks the requirements, applies the
/// updates and writes the metadata file.
#[derive(Debug, Clone)]
pub struct RestPointerStore {
    client: reqwest::Client,
    auth: Arc<RestAuth>,
    /// `{uri}/v1/{prefix}` without a trailing slash.
    base: url::Url,
}

impl RestPointerStore {
    /// Ask the server's `/v1/config` for its prefix (overrides, then defaults, then the
    /// `prefix` property), authenticated by `auth` (see [`super::rest_auth`]); `header.*`
    /// properties are sent with every request.
    pub async fn connect(
        uri: &str,
        warehouse: Option<&str>,
        props: &std::collections::HashMap<String, String>,
        auth: Arc<RestAuth>,
        timeouts: super::storage::Timeouts,
    ) -> anyhow::Result<Self> {
        use anyhow::Context;
        let uri = uri.trim_end_matches('/');
        let client = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .timeout(timeouts.request)
            .default_headers(extra_headers(props)?)
            .build()?;
        let mut config_url = url::Url::parse(&format!("{uri}/v1/config")).context("catalog.uri is not a URL")?;
        if let Some(w) = warehouse {
            config_url.query_pairs_mut().append_pair("warehouse", w);
        }
        let store = RestPointerStore {
            client,
            auth,
            base: url::Url::parse(&format!("{uri}/v1")).context("catalog.uri is not a URL")?,
        };
        let response = store.send(reqwest::Method::GET, config_url, None).await.context("GET /v1/config")?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(store.auth.refused("the request for its configuration", status).into());
        }
        if !status.is_success() {
            let message = server_message(&response.text().await.unwrap_or_default());
            let (setting, what) = match (status.as_u16(), warehouse) {
                (400 | 404, Some(w)) => ("catalog.warehouse", format!("warehouse {w}")),
                _ => ("catalog.uri", "the request for its configuration".to_string()),
            };
            return Err(Refused {
                setting,
                detail: format!("the REST catalog refused {what} ({status}: {message})"),
            }
            .into());
        }
        let config: serde_json::Value = response
            .json()
            .await
            .context("GET /v1/config: not JSON")?;
        let prefix = ["overrides", "defaults"]
            .iter()
            .find_map(|k| config[k]["prefix"].as_str().map(str::to_string))
            .or_else(|| props.get("prefix").cloned())
            .unwrap_or_default();
        let base = if prefix.is_empty() { format!("{uri}/v1") } else { format!("{uri}/v1/{}", prefix.trim_matches('/')) };
        Ok(RestPointerStore {
            base: url::Url::parse(&base).context("catalog.uri is not a URL")?,
            ..store
        })
    }

    /// Send a request with the current token; a refused refreshable token is replaced once
    /// and the request sent again (a 401 means the server did nothing).
    async fn send(
        &self,
        method: reqwest::Method,
        url: url::Url,
        body: Option<&serde_json::Value>,
    ) -> anyhow::Result<reqwest::Response> {
        let mut again = self.auth.refreshes();
        loop {
            let mut request = self.client.request(method.clone(), url.clone());
            if let Some(header) = self.auth.header().await? {
                request = request.header(reqwest::header::AUTHORIZATION, header);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request.send().await?;
            if response.status() == reqwest::StatusCode::UNAUTHORIZED && again {
                again = false;
                self.auth.invalidate().await;
                continue;
            }
            return Ok(response);
        }
    }

    fn table_url(&self, ident: &TableIdent) -> url::Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("an http URL")
            .push("namespaces")
            .push(&ident.namespace().join("\u{1f}"))
            .push("tables")
            .push(ident.name());
        url
    }
}

/// The message of an Iceberg REST error response (`{"error": {"message": ...}}`), else the
/// start of the body.
pub fn server_message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.chars().take(300).collect::<String>().trim().to_string())
}

/// The `header.*` catalog properties as request headers.
fn extra_headers(props: &std::collections::HashMap<String, String>) -> anyhow::Result<reqwest::header::HeaderMap> {
    use anyhow::Context;
    let mut headers = reqwest::header::HeaderMap::new();
    for (k, v) in props {
        if let Some(name) = k.strip_prefix("header.") {
            headers.insert(
                reqwest::header::HeaderName::from_bytes(name.as_bytes()).with_context(|| format!("catalog property {k}"))?,
                reqwest::header::HeaderValue::from_str(v).with_context(|| format!("catalog property {k}"))?,
            );
        }
    }
    Ok(headers)
}

#[async_trait::async_trait]
impl PointerStore for RestPointerStore {
    async fn commit(
        &self,
        base: &Table,
        requirements: &[TableRequirement],
        updates: Vec<TableUpdate>,
    ) -> Result<CommitResult, Error> {
        let ident = base.identifier();
        let mut all = vec![TableRequirement::UuidMatch {
            uuid: base.metadata().uuid(),
        }];
        all.extend(requirements.iter().cloned());
        let body = serde_json::json!({ "identifier": ident, "requirements": all, "updates": updates });
        let response = match self.send(reqwest::Method::POST, self.table_url(ident), Some(&body)).await {
            Ok(r) => r,
            Err(e) => {
                let sent = e.downcast_ref::<reqwest::Error>().is_some_and(|e| !e.is_connect() && !e.is_builder());
                // Nothing reached the server (or the token could not be had).
                if !sent {
                    return Err(Error::catalog(format!("cannot reach the REST catalog to commit {ident}"), e));
                }
                return Err(Error::UnknownOutcome(format!(
                    "the REST commit of {ident} got no answer ({e}); its outcome is unknown, check `lake show {ident}` before running again"
                )));
            }
        };
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        match status.as_u16() {
            200..=299 => {
                let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                let metadata_location = answer["metadata-location"].as_str().unwrap_or_default().to_string();
                Ok(CommitResult::Committed { metadata_location })
            }
            409 => Ok(CommitResult::Conflict),
            401 | 403 => Err(Error::catalog(
                format!("the REST catalog refused the commit of {ident}"),
                self.auth.refused(&format!("the commit of {ident}"), status),
            )),
            500 | 502 | 503 | 504 => Err(Error::UnknownOutcome(format!(
                "the REST catalog answered {status} to the commit of {ident}; its outcome is unknown, check `lake show {ident}` before running again"
            ))),
            _ => Err(Error::Invalid(format!(
                "the REST catalog refused the commit of {ident}: {status} {}",
                text.chars().take(500).collect::<String>()
            ))),
        }
    }
}

/// Remove the metadata file of a swap that certainly failed.
async fn discard(base: &Table, path: &str) {
    if let Err(e) = base.file_io().delete(path).await {
        tracing::warn!(path, error = %e, "could not remove the metadata file of a failed commit");
    }
}
