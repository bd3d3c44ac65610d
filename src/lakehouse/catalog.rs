//! Connecting to an Iceberg catalog (SQL on SQLite/Postgres, or REST) and the storage behind it.
//!
//! [`Lakehouse`] is the one handle the rest of `lake` uses for catalog access: it loads and
//! creates tables and holds the [`super::pointer::PointerStore`] that our own commits end with
//! (see [`super::commit`]).

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use iceberg::spec::{Schema, UnboundPartitionSpec};
use iceberg::table::Table;
use iceberg::{Catalog, CatalogBuilder, NamespaceIdent, TableCreation, TableIdent};
use iceberg_catalog_rest::{RestCatalog, RestCatalogBuilder};
use iceberg_catalog_sql::SqlCatalogBuilder;
use iceberg_storage_opendal::OpenDalResolvingStorageFactory;

use super::pointer::{PointerStore, RestPointerStore, SqlPointerStore};
use super::rest_auth::RestAuth;

use super::fault::{Place, bounded};
pub use super::storage::Timeouts;
use super::storage::probe_warehouse;

/// Which catalog to connect to, fully resolved (paths absolute, `${ENV}` expanded).
#[derive(Debug, Clone)]
pub enum CatalogSpec {
    /// A JDBC-compatible SQL catalog (`iceberg_tables`), on SQLite or Postgres.
    Sql {
        name: String,
        uri: String,
        warehouse: String,
        /// Storage properties passed to FileIO (`s3.endpoint`, ...).
        props: HashMap<String, String>,
        timeouts: Timeouts,
    },
    /// An Iceberg REST catalog.
    Rest {
        name: String,
        uri: String,
        warehouse: Option<String>,
        /// `credential`, `token`, `header.*` and storage properties.
        props: HashMap<String, String>,
        timeouts: Timeouts,
    },
}

impl CatalogSpec {
    /// The catalog's properties, storage settings (`s3.endpoint`, ...) among them.
    pub fn props(&self) -> &HashMap<String, String> {
        match self {
            CatalogSpec::Sql { props, .. } | CatalogSpec::Rest { props, .. } => props,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            CatalogSpec::Sql { name, .. } | CatalogSpec::Rest { name, .. } => name,
        }
    }

    /// The catalog's URI (may hold a password: print it through [`redact_uri`]).
    pub fn uri(&self) -> &str {
        match self {
            CatalogSpec::Sql { uri, .. } | CatalogSpec::Rest { uri, .. } => uri,
        }
    }

    /// The warehouse location, when one is configured (a REST catalog may choose its own).
    pub fn warehouse(&self) -> Option<&str> {
        match self {
            CatalogSpec::Sql { warehouse, .. } => Some(warehouse),
            CatalogSpec::Rest { warehouse, .. } => warehouse.as_deref(),
        }
    }

    pub fn timeouts(&self) -> Timeouts {
        match self {
            CatalogSpec::Sql { timeouts, .. } | CatalogSpec::Rest { timeouts, .. } => *timeouts,
        }
    }

    /// When `path` (absolute) is the SQLite catalog database (or one of its journal files) or
    /// lies inside a local warehouse, what it belongs to; `None` for a path the lakehouse does
    /// not own. Commands that write files a user names check this first.
    pub fn owned_local_path(&self, path: &std::path::Path) -> Option<String> {
        let canonical = |p: &std::path::Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
        let path = canonical(path);
        let warehouse = match self {
            CatalogSpec::Sql { warehouse, .. } => Some(warehouse.as_str()),
            CatalogSpec::Rest { warehouse, .. } => warehouse.as_deref(),
        };
        if let Some(dir) = warehouse.and_then(|w| w.strip_prefix("file://")) {
            if path.starts_with(canonical(std::path::Path::new(dir))) {
                return Some(format!("the warehouse {dir}"));
            }
        }
        if let CatalogSpec::Sql { uri, .. } = self {
            if let Some(db) = sqlite_path(uri) {
                let db = canonical(std::path::Path::new(db));
                let same_dir = path.parent() == db.parent();
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                let db_name = db.file_name().unwrap_or_default().to_string_lossy();
                if same_dir && name.starts_with(db_name.as_ref()) {
                    return Some(format!("the catalog database {}", db.display()));
                }
            }
        }
        None
    }
}

/// The iceberg REST client and the refresh of its OAuth2 token (it does not refresh its own).
#[derive(Clone)]
struct RestClient {
    catalog: Arc<RestCatalog>,
    auth: Arc<RestAuth>,
    next_refresh: Arc<tokio::sync::Mutex<Option<std::time::Instant>>>,
}

/// A connected catalog plus the storage it writes to.
#[derive(Clone)]
pub struct Lakehouse {
    catalog: Arc<dyn Catalog>,
    /// For a REST catalog: the same client, typed, how it authenticates, and when the iceberg
    /// client's own OAuth2 token is next replaced.
    rest: Option<RestClient>,
    /// The last step of our own commits (see [`super::pointer`]).
    pub(crate) pointers: Arc<dyn PointerStore>,
    spec: CatalogSpec,
}

impl std::fmt::Debug for Lakehouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lakehouse").field("catalog", &self.spec.name()).finish()
    }
}

impl Lakehouse {
    /// Connect to the catalog (within the connect timeout) and, for an object-store
    /// warehouse, check that it answers. For SQLite the database file (and its folder) is
    /// created. Failures are environment faults (see [`super::fault`]).
    pub async fn connect(spec: &CatalogSpec) -> Result<Self> {
        let lakehouse = Self::connect_catalog(spec).await?;
        if let Some(warehouse) = spec.warehouse() {
            probe_warehouse(warehouse, spec.props(), spec.timeouts()).await?;
        }
        Ok(lakehouse)
    }

    /// Connect to the catalog only (within the connect timeout), without checking the
    /// warehouse: `lake doctor` checks that on its own.
    pub async fn connect_catalog(spec: &CatalogSpec) -> Result<Self> {
        bounded(
            Place::Catalog,
            format!("the catalog at {}", redact_uri(spec.uri())),
            spec.timeouts().connect,
            Self::open(spec),
        )
        .await
    }

    async fn open(spec: &CatalogSpec) -> Result<Self> {
        let storage = Arc::new(OpenDalResolvingStorageFactory::new());
        match spec {
            CatalogSpec::Sql {
                name,
                uri,
                warehouse,
                props,
                ..
            } => {
                validate_pool_props(props)?;
                if let Some(dir) = warehouse.strip_prefix("file://") {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("cannot create the warehouse folder {dir}"))?;
                }
                let postgres = uri.starts_with("postgres:") || uri.starts_with("postgresql:");
                if postgres {
                    probe_tcp(uri).await?;
                }
                if let Some(path) = sqlite_path(uri) {
                    if let Some(dir) = std::path::Path::new(path).parent() {
                        std::fs::create_dir_all(dir).with_context(|| {
                            format!("cannot create the folder of the SQLite catalog {path}")
                        })?;
                    }
                }
                let uri = if uri.starts_with("sqlite:") && !uri.contains("mode=") {
                    format!("{uri}{}mode=rwc", if uri.contains('?') { '&' } else { '?' })
                } else {
                    uri.clone()
                };
                let mut all = props.clone();
                all.insert("uri".into(), uri.clone());
                all.insert("warehouse".into(), warehouse.clone());
                all.insert(
                    "sql_bind_style".into(),
                    if postgres { "DollarNumeric" } else { "QMark" }.into(),
                );
                // Opening creates the catalog tables if missing; two processes doing so at once
                // can collide (Postgres reports a duplicate type): the second attempt sees them.
                let mut attempt = 0;
                let catalog = loop {
                    let result = SqlCatalogBuilder::default()
                        .with_storage_factory(storage.clone())
                        .load(name.clone(), all.clone())
                        .await;
                    match result {
                        Ok(c) => break c,
                        Err(_) if attempt < 3 => {
                            attempt += 1;
                            tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
                        }
                        Err(e) => {
                            return Err(anyhow::Error::from(e))
                                .with_context(|| format!("cannot open the SQL catalog at {}", redact_uri(&uri)));
                        }
                    }
                };
                sqlx::any::install_default_drivers();
                let pool = sqlx::any::AnyPoolOptions::new()
                    .max_connections(2)
                    .acquire_timeout(spec.timeouts().connect)
                    .connect(&uri)
                    .await
                    .with_context(|| format!("cannot connect to {}", redact_uri(&uri)))?;
                super::catalog_schema::check(&pool).await?;
                Ok(Lakehouse {
                    catalog: Arc::new(catalog),
                    rest: None,
                    pointers: Arc::new(SqlPointerStore::new(pool, name.clone(), postgres)),
                    spec: spec.clone(),
                })
            }
            CatalogSpec::Rest {
                name,
                uri,
                warehouse,
                props,
                ..
            } => {
                // Our own client first: a refused credential fails here with a clear line.
                let plain = reqwest::Client::builder()
                    .connect_timeout(spec.timeouts().connect)
                    .timeout(spec.timeouts().request)
                    .build()?;
                let auth = Arc::new(RestAuth::new(uri, props, plain));
                let pointers =
                    RestPointerStore::connect(uri, warehouse.as_deref(), props, auth.clone(), spec.timeouts()).await?;
                let mut all = props.clone();
                all.insert("uri".into(), uri.clone());
                if let Some(w) = warehouse {
                    all.insert("warehouse".into(), w.clone());
                }
                let catalog = Arc::new(
                    RestCatalogBuilder::default()
                        .with_storage_factory(storage)
                        .load(name.clone(), all)
                        .await
                        .map_err(anyhow::Error::from)
                        .with_context(|| format!("cannot open the REST catalog at {}", redact_uri(uri)))?,
                );
                // The iceberg client fetched its token while loading.
                let next_refresh = auth.refresh_interval().await?.map(|i| std::time::Instant::now() + i);
                Ok(Lakehouse {
                    catalog: catalog.clone(),
                    rest: Some(RestClient {
                        catalog,
                        auth,
                        next_refresh: Arc::new(tokio::sync::Mutex::new(next_refresh)),
                    }),
                    pointers: Arc::new(pointers),
                    spec: spec.clone(),
                })
            }
        }
    }

    /// Before a catalog call: replace a REST OAuth2 token that is about to expire (the
    /// iceberg client's and ours), so long commands outlive their first token.
    async fn fresh(&self) -> Result<&Arc<dyn Catalog>> {
        if let Some(rest) = &self.rest {
            let mut next = rest.next_refresh.lock().await;
            if next.is_some_and(|at| std::time::Instant::now() >= at) {
                rest.catalog
                    .regenerate_token()
                    .await
                    .map_err(anyhow::Error::from)
                    .context("cannot refresh the REST catalog token (catalog.credential)")?;
                *next = rest.auth.refresh_interval().await?.map(|i| std::time::Instant::now() + i);
            }
        }
        Ok(&self.catalog)
    }

    pub fn catalog(&self) -> Arc<dyn Catalog> {
        self.catalog.clone()
    }

    pub fn spec(&self) -> &CatalogSpec {
        &self.spec
    }

    /// Load a table, or `None` when it does not exist (within the request timeout).
    pub async fn load_table(&self, ident: &TableIdent) -> Result<Option<Table>> {
        let what = format!("the catalog at {} (loading {ident})", redact_uri(self.spec.uri()));
        bounded(Place::Catalog, what, self.spec.timeouts().request, self.load_table_unbounded(ident)).await
    }

    async fn load_table_unbounded(&self, ident: &TableIdent) -> Result<Option<Table>> {
        let catalog = self.fresh().await?;
        if !catalog
            .table_exists(ident)
            .await
            .with_context(|| format!("cannot look up table {ident}"))?
        {
            return Ok(None);
        }
        let table = catalog
            .load_table(ident)
            .await
            .map_err(concise)
            .with_context(|| format!("cannot load table {ident}"))?;
        Ok(Some(table))
    }

    /// Load a table that must exist.
    pub async fn table(&self, ident: &TableIdent) -> Result<Table> {
        self.load_table(ident)
            .await?
            .ok_or_else(|| anyhow!("table {ident} does not exist in catalog '{}'", self.spec.name()))
    }

    /// Create the namespace if it is missing.
    pub async fn ensure_namespace(&self, namespace: &NamespaceIdent) -> Result<()> {
        let catalog = self.fresh().await?;
        if !catalog.namespace_exists(namespace).await? {
            match catalog.create_namespace(namespace, HashMap::new()).await {
                Ok(_) => {}
                // Another model of the same run may have created it meanwhile.
                Err(_) if catalog.namespace_exists(namespace).await? => {}
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("cannot create namespace {}", namespace.join("."))
                    });
                }
            }
        }
        Ok(())
    }

    /// Create a table (v2) with the given schema and partition spec; `properties` over
    /// [`created_table_properties`](super::pointer::created_table_properties).
    pub async fn create_table(
        &self,
        ident: &TableIdent,
        schema: Schema,
        partition_spec: Option<UnboundPartitionSpec>,
        properties: HashMap<String, String>,
    ) -> Result<Table> {
        self.ensure_namespace(ident.namespace()).await?;
        let mut properties = properties;
        for (key, value) in super::pointer::created_table_properties() {
            properties.entry(key.to_string()).or_insert_with(|| value.to_string());
        }
        let creation = TableCreation::builder()
            .name(ident.name().to_string())
            .schema(schema)
            .partition_spec_opt(partition_spec)
            .properties(properties)
            .build();
        self.fresh()
            .await?
            .create_table(ident.namespace(), creation)
            .await
            .map_err(concise)
            .with_context(|| format!("cannot create table {ident}"))
    }

    /// Every table in every top-level namespace, sorted.
    pub async fn list_tables(&self) -> Result<Vec<TableIdent>> {
        let mut out = Vec::new();
        let catalog = self.fresh().await?;
        for ns in catalog.list_namespaces(None).await? {
            out.extend(catalog.list_tables(&ns).await?);
        }
        out.sort_by_key(|t| t.to_string());
        Ok(out)
    }
}

/// An error of the iceberg REST client without the HTTP response headers it quotes (they
/// say nothing to a user and bury the server's message).
fn concise(e: iceberg::Error) -> anyhow::Error {
    let text = e.to_string();
    match text.find("headers: {") {
        Some(start) => {
            let end = text[start..].find('}').map(|i| start + i + 1).unwrap_or(text.len());
            let rest = text[end..].trim_start_matches([',', ' ']);
            anyhow!("{}{rest}", &text[..start])
        }
        None => anyhow::Error::from(e),
    }
}

/// Parse `"namespace.table"` into a [`TableIdent`].
pub fn table_ident(name: &str) -> Result<TableIdent> {
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() < 2 || parts.iter().any(|p| p.is_empty()) {
        bail!("'{name}' is not a table name of the form namespace.table");
    }
    Ok(TableIdent::from_strs(parts)?)
}

fn sqlite_path(uri: &str) -> Option<&str> {
    let rest = uri.strip_prefix("sqlite:")?;
    let rest = rest.trim_start_matches("//");
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then_some(path)
}

/// Connect once to the host and port of a `postgres://` URI, so a closed port fails at once
/// ("connection refused") rather than after the driver's retries until the connect timeout.
/// URIs without a single TCP host (a Unix socket, several hosts) are left to the driver.
async fn probe_tcp(uri: &str) -> Result<()> {
    let Ok(url) = url::Url::parse(uri) else { return Ok(()) };
    let Some(host) = url.host_str().filter(|h| !h.is_empty()) else { return Ok(()) };
    let port = url.port().unwrap_or(5432);
    // As the driver's own I/O error, so it is classified as the catalog's (not the storage's).
    tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(sqlx::Error::Io)
        .with_context(|| format!("cannot connect to {}", redact_uri(uri)))?;
    Ok(())
}

/// `pool.*` values make iceberg-catalog-sql panic when malformed: check them first.
fn validate_pool_props(props: &HashMap<String, String>) -> Result<()> {
    for (key, kind) in [
        ("pool.max-connections", "a whole number"),
        ("pool.idle-timeout", "a whole number of seconds"),
        ("pool.test-before-acquire", "true or false"),
    ] {
        if let Some(v) = props.get(key) {
            let ok = match key {
                "pool.test-before-acquire" => v.parse::<bool>().is_ok(),
                _ => v.parse::<u64>().is_ok(),
            };
            if !ok {
                bail!("catalog property {key} = {v:?} must be {kind}");
            }
        }
    }
    Ok(())
}

/// Query parameters whose values are secrets.
const SECRET_PARAMS: [&str; 10] = [
    "password", "passwd", "pwd", "sslpassword", "secret", "token", "access_token",
    "credential", "secret-access-key", "sig",
];

/// Hide the credentials in every URI inside `text`: the whole user-info part
/// (`postgres://user:p@ss@host` → `postgres://***@host`) and the values of secret query
/// parameters (`?password=...` → `?password=***`). Text without a URI is returned as is.
pub fn redact_uri(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let (before, after) = rest.split_at(pos + 3);
        out.push_str(before);
        // The URI runs to the next white space or quote.
        let end = after.find(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == '`').unwrap_or(after.len());
        out.push_str(&redact_one(&after[..end]));
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// `after` is a URI without its scheme: `user:pass@host/path?query`.
fn redact_one(after: &str) -> String {
    let (head, query) = match after.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (after, None),
    };
    // User info ends at the last '@'; a path with an '@' (no ':' before it) is not user info.
    let head = match head.rfind('@') {
        Some(at) if head[..at].contains(':') || !head[..at].contains('/') => format!("***{}", &head[at..]),
        _ => head.to_string(),
    };
    let Some(query) = query else { return head };
    let params: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if SECRET_PARAMS.contains(&k.to_ascii_lowercase().as_str()) => format!("{k}=***"),
            _ => kv.to_string(),
        })
        .collect();
    format!("{head}?{}", params.join("&"))
}
