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

use iceberg::spec::TableMetadata;
use iceberg::table::Table;
use iceberg::{MetadataLocation, TableIdent, TableRequirement, TableUpdate};
use sqlx::{AnyPool, Row};

use super::commit::Error;

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

/// `updates` applied to `base`'s metadata, after checking `requirements` against it.
pub fn apply_updates(
    base: &Table,
    base_location: &str,
    requirements: &[TableRequirement],
    updates: Vec<TableUpdate>,
) -> Result<TableMetadata, Error> {
    for requirement in requirements {
        requirement.check(Some(base.metadata()))?;
    }
    let mut builder = base.metadata().clone().into_builder(Some(base_location.to_string()));
    for update in updates {
        builder = update.apply(builder)?;
    }
    Ok(builder.build()?.metadata)
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
        let new_metadata = apply_updates(base, &base_location, requirements, updates)?;
        let new_location = MetadataLocation::from_str(&base_location)?
            .with_next_version()
            .with_new_metadata(&new_metadata);
        new_metadata.write_to(base.file_io(), &new_location).await?;
        let new_location = new_location.to_string();
        match self.swap(ident, &base_location, &new_location).await {
            Ok(true) => Ok(CommitResult::Committed {
                metadata_location: new_location,
            }),
            Ok(false) => {
                discard(base, &new_location).await;
                Ok(CommitResult::Conflict)
            }
            Err(e) => match self.pointer(ident).await {
                Ok(Some(p)) if p == new_location => Ok(CommitResult::Committed {
                    metadata_location: new_location,
                }),
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
    /// `{uri}/v1/{prefix}` without a trailing slash.
    base: url::Url,
}

impl RestPointerStore {
    /// Ask the server's `/v1/config` for its prefix (overrides, then defaults, then the
    /// `prefix` property) and authenticate: a bearer `token`, or an OAuth2 client `credential`
    /// (`id:secret`) exchanged at `oauth2-server-uri` (default `{uri}/v1/oauth/tokens`);
    /// `header.*` properties are sent with every request.
    pub async fn connect(
        uri: &str,
        warehouse: Option<&str>,
        props: &std::collections::HashMap<String, String>,
        timeouts: super::storage::Timeouts,
    ) -> anyhow::Result<Self> {
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
        let uri = uri.trim_end_matches('/');
        let plain = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .timeout(timeouts.request)
            .build()?;
        let token = match (props.get("token"), props.get("credential")) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(c)) => Some(oauth_token(&plain, uri, c, props).await?),
            _ => None,
        };
        if let Some(t) = token {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {t}"))
                .context("the catalog token is not a valid header value")?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let client = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .timeout(timeouts.request)
            .default_headers(headers)
            .build()?;
        let mut config_url = url::Url::parse(&format!("{uri}/v1/config")).context("catalog.uri is not a URL")?;
        if let Some(w) = warehouse {
            config_url.query_pairs_mut().append_pair("warehouse", w);
        }
        let config: serde_json::Value = client
            .get(config_url)
            .send()
            .await
            .context("GET /v1/config")?
            .error_for_status()
            .context("GET /v1/config")?
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
            client,
            base: url::Url::parse(&base).context("catalog.uri is not a URL")?,
        })
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

/// OAuth2 client credentials → access token.
async fn oauth_token(
    client: &reqwest::Client,
    uri: &str,
    credential: &str,
    props: &std::collections::HashMap<String, String>,
) -> anyhow::Result<String> {
    use anyhow::Context;
    let (id, secret) = credential.split_once(':').unwrap_or(("", credential));
    let endpoint = props.get("oauth2-server-uri").cloned().unwrap_or_else(|| format!("{uri}/v1/oauth/tokens"));
    let scope = props.get("scope").map(String::as_str).unwrap_or("catalog");
    let mut form = vec![("grant_type", "client_credentials"), ("client_secret", secret), ("scope", scope)];
    if !id.is_empty() {
        form.push(("client_id", id));
    }
    let answer: serde_json::Value = client
        .post(&endpoint)
        .form(&form)
        .send()
        .await
        .context("the OAuth2 token endpoint")?
        .error_for_status()
        .context("the OAuth2 token endpoint refused catalog.credential")?
        .json()
        .await
        .context("the OAuth2 token endpoint answered no JSON")?;
    answer["access_token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("the OAuth2 token endpoint answered without an access_token"))
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
        let response = match self.client.post(self.table_url(ident)).json(&body).send().await {
            Ok(r) => r,
            // Nothing reached the server.
            Err(e) if e.is_connect() => return Err(Error::catalog(format!("cannot reach the REST catalog to commit {ident}"), e)),
            Err(e) => {
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
