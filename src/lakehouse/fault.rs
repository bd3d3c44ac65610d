//! Failures of the environment rather than of the project: the catalog or the storage could
//! not be reached, refused the request, is read-only or full. `lake` exits with code 3 for
//! these and prints one line naming the setting to fix; everything else is a model, test or
//! usage error.
//!
//! [`classify`] is the one place that decides: it walks an error's causes for I/O, SQL-driver,
//! object-store and timeout errors. [`Fault::line`] turns a fault into that one line.

use std::time::Duration;

use super::catalog::{CatalogSpec, redact_uri};
use super::rest_auth::Refused;

/// Where a fault happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Catalog,
    Storage,
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// Connection refused, reset, host unreachable, the server went away.
    Unreachable,
    /// No answer within the configured timeout.
    TimedOut,
    /// A read-only file system or database.
    ReadOnly,
    /// No space left (or quota exceeded).
    Full,
    /// Permission denied, or credentials refused.
    Denied,
    /// The bucket does not exist.
    NoBucket,
    /// The SQL catalog's tables have the old JdbcCatalog V0 layout (see
    /// [`super::catalog_schema`]).
    CatalogSchemaV0,
    /// A REST catalog answered with a server error (5xx): its own storage or database failed.
    ServerError,
}

/// An environment failure, with the underlying cause's text.
#[derive(Debug, Clone)]
pub struct Fault {
    pub place: Place,
    pub kind: FaultKind,
    pub detail: String,
    /// The setting to fix, when the failure names one (a refused token or warehouse).
    pub setting: Option<&'static str>,
}

/// A request that got no answer in time; raised by `lake`'s own bounded waits.
#[derive(Debug)]
pub struct TimedOut {
    pub place: Place,
    pub what: String,
    pub after: Duration,
}

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} got no answer within {} s", self.what, self.after.as_secs())
    }
}

impl std::error::Error for TimedOut {}

/// Run `fut`, failing with [`TimedOut`] when it takes longer than `after`.
pub async fn bounded<T>(
    place: Place,
    what: impl Into<String>,
    after: Duration,
    fut: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(after, fut).await {
        Ok(r) => r,
        Err(_) => Err(TimedOut {
            place,
            what: what.into(),
            after,
        }
        .into()),
    }
}

/// The environment fault behind `error`, if it is one.
pub fn classify(error: &anyhow::Error) -> Option<Fault> {
    let detail = |e: &dyn std::error::Error| e.to_string();
    for cause in error.chain() {
        if let Some(t) = cause.downcast_ref::<TimedOut>() {
            return Some(fault(t.place, FaultKind::TimedOut, t.to_string()));
        }
        if let Some(v0) = cause.downcast_ref::<super::catalog_schema::CatalogSchemaV0>() {
            return Some(fault(Place::Catalog, FaultKind::CatalogSchemaV0, v0.to_string()));
        }
        if let Some(r) = cause.downcast_ref::<Refused>() {
            return Some(Fault {
                setting: Some(r.setting),
                ..fault(Place::Catalog, FaultKind::Denied, r.to_string())
            });
        }
        // reqwest errors that reach us unwrapped come from the REST catalog (the object
        // store's arrive inside an opendal error, matched first): unreachable or silent.
        if let Some(e) = cause.downcast_ref::<reqwest::Error>() {
            if let Some(kind) = reqwest_kind(e) {
                return Some(fault(Place::Catalog, kind, detail(e)));
            }
        }
        if let Some(e) = cause.downcast_ref::<sqlx::Error>() {
            if let Some(kind) = sqlx_kind(e) {
                return Some(fault(Place::Catalog, kind, detail(e)));
            }
        }
        if let Some(e) = cause.downcast_ref::<opendal::Error>() {
            if let Some(kind) = opendal_kind(e) {
                return Some(fault(Place::Storage, kind, opendal_detail(&e.to_string())));
            }
        }
        if let Some(e) = cause.downcast_ref::<std::io::Error>() {
            if let Some(kind) = io_kind(e) {
                return Some(fault(Place::Storage, kind, e.to_string()));
            }
        }
    }
    text_kind(&format!("{error:#}"))
}

fn fault(place: Place, kind: FaultKind, detail: String) -> Fault {
    Fault {
        place,
        kind,
        detail,
        setting: None,
    }
}

/// The store's own words when an OpenDAL error carries them (`S3Error { code, message }`),
/// else the error's first line (which lists the whole HTTP response).
fn opendal_detail(text: &str) -> String {
    let field = |name: &str| {
        let start = text.find(&format!("{name}: \""))? + name.len() + 3;
        let len = text[start..].find('"')?;
        Some(&text[start..start + len])
    };
    match (field("code"), field("message")) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        _ => first_line(text),
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}

fn io_kind(e: &std::io::Error) -> Option<FaultKind> {
    use std::io::ErrorKind as K;
    match e.raw_os_error() {
        Some(28) | Some(122) => return Some(FaultKind::Full), // ENOSPC, EDQUOT
        Some(30) => return Some(FaultKind::ReadOnly),         // EROFS
        Some(13) | Some(1) => return Some(FaultKind::Denied), // EACCES, EPERM
        _ => {}
    }
    match e.kind() {
        K::PermissionDenied => Some(FaultKind::Denied),
        K::ReadOnlyFilesystem => Some(FaultKind::ReadOnly),
        K::StorageFull | K::QuotaExceeded => Some(FaultKind::Full),
        K::TimedOut => Some(FaultKind::TimedOut),
        K::ConnectionRefused
        | K::ConnectionReset
        | K::ConnectionAborted
        | K::NotConnected
        | K::BrokenPipe
        | K::HostUnreachable
        | K::NetworkUnreachable
        | K::NetworkDown
        | K::AddrNotAvailable
        | K::UnexpectedEof => Some(FaultKind::Unreachable),
        _ => None,
    }
}

/// A REST catalog request that got no answer (a refused token is [`Refused`]).
fn reqwest_kind(e: &reqwest::Error) -> Option<FaultKind> {
    if e.status().is_some() {
        None
    } else if e.is_timeout() {
        Some(FaultKind::TimedOut)
    } else if e.is_connect() || e.is_request() {
        Some(FaultKind::Unreachable)
    } else {
        None
    }
}

fn sqlx_kind(e: &sqlx::Error) -> Option<FaultKind> {
    match e {
        sqlx::Error::Io(io) => io_kind(io).or(Some(FaultKind::Unreachable)),
        sqlx::Error::Tls(_) | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
            Some(FaultKind::Unreachable)
        }
        sqlx::Error::PoolTimedOut => Some(FaultKind::TimedOut),
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            let message = db.message().to_ascii_lowercase();
            match code.as_str() {
                // SQLite: READONLY (and extended codes), FULL, CANTOPEN, IOERR, PERM.
                "8" | "264" | "520" | "776" | "1032" | "1288" => Some(FaultKind::ReadOnly),
                "13" => Some(FaultKind::Full),
                "14" | "10" => Some(FaultKind::Unreachable),
                "3" | "23" => Some(FaultKind::Denied),
                // Postgres: connection exceptions, shutdown, insufficient resources, auth.
                c if c.starts_with("08") || c.starts_with("57P") => Some(FaultKind::Unreachable),
                "53100" => Some(FaultKind::Full),
                c if c.starts_with("53") => Some(FaultKind::Unreachable),
                "28000" | "28P01" | "42501" => Some(FaultKind::Denied),
                "25006" => Some(FaultKind::ReadOnly),
                _ if message.contains("readonly database") || message.contains("read-only") => {
                    Some(FaultKind::ReadOnly)
                }
                _ => None,
            }
        }
        _ => None,
    }
}

fn opendal_kind(e: &opendal::Error) -> Option<FaultKind> {
    use opendal::ErrorKind as K;
    let text = e.to_string();
    if text.contains("NoSuchBucket") {
        return Some(FaultKind::NoBucket);
    }
    if text.contains("timeout reached") || text.contains("timed out") {
        return Some(FaultKind::TimedOut);
    }
    match e.kind() {
        K::PermissionDenied => Some(FaultKind::Denied),
        K::RateLimited => Some(FaultKind::Unreachable),
        K::Unexpected if e.is_temporary() || text.contains("send http request") => Some(FaultKind::Unreachable),
        _ => text_kind(&text).map(|f| f.kind),
    }
}

/// Last resort for causes that reached us only as text (some libraries flatten them).
fn text_kind(text: &str) -> Option<Fault> {
    let t = text.to_ascii_lowercase();
    // The iceberg REST client's text of a server error answer.
    if ["status: 500", "status: 502", "status: 503", "status: 504"].iter().any(|s| t.contains(s)) {
        return Some(fault(Place::Catalog, FaultKind::ServerError, first_line(text)));
    }
    // The SQL driver's own words, when a library kept only the text of its error.
    if t.contains("pool timed out while waiting for an open connection") {
        return Some(fault(Place::Catalog, FaultKind::TimedOut, first_line(text)));
    }
    if t.contains("error communicating with database") || t.contains("terminating connection due to administrator command") {
        return Some(fault(Place::Catalog, FaultKind::Unreachable, first_line(text)));
    }
    if t.contains("notauthorized") || t.contains("401 unauthorized") {
        return Some(fault(Place::Catalog, FaultKind::Denied, first_line(text)));
    }
    let kind = if t.contains("no space left on device") || t.contains("database or disk is full") {
        FaultKind::Full
    } else if t.contains("read-only file system") || t.contains("readonly database") {
        FaultKind::ReadOnly
    } else if t.contains("nosuchbucket") {
        FaultKind::NoBucket
    } else if t.contains("connection refused") || t.contains("error sending request") || t.contains("dns error") {
        FaultKind::Unreachable
    } else {
        return None;
    };
    let place = if t.contains("sqlx") || (t.contains("catalog") && !t.contains("warehouse")) {
        Place::Catalog
    } else {
        Place::Storage
    };
    Some(fault(place, kind, first_line(text)))
}

impl Fault {
    /// One line saying what failed and which setting to check.
    pub fn line(&self, spec: &CatalogSpec) -> String {
        let detail = redact_uri(&self.detail);
        match self.place {
            Place::Catalog => {
                let uri = match spec {
                    CatalogSpec::Sql { uri, .. } | CatalogSpec::Rest { uri, .. } => redact_uri(uri),
                };
                if self.kind == FaultKind::CatalogSchemaV0 {
                    return format!("the catalog at {uri} {detail}");
                }
                let what = match self.kind {
                    FaultKind::ReadOnly => "is read-only",
                    FaultKind::Full => "is out of space",
                    FaultKind::Denied => "refused access",
                    FaultKind::TimedOut => "did not answer in time",
                    FaultKind::ServerError => "failed",
                    _ => "cannot be reached",
                };
                let named = self.setting.map(|s| format!("check {s} in lake.toml"));
                let hint = match (spec, &self.kind) {
                    _ if named.is_some() => named.as_deref().unwrap_or_default(),
                    (_, FaultKind::ServerError) => "the server's log says why (often its access to the warehouse storage)",
                    (CatalogSpec::Rest { .. }, FaultKind::Denied) => {
                        "check catalog.token or catalog.credential in lake.toml (a token may have expired)"
                    }
                    (CatalogSpec::Rest { .. }, _) => "check catalog.uri in lake.toml (or LAKE_CATALOG_URI), and that the server is up",
                    (CatalogSpec::Sql { uri, .. }, FaultKind::Denied) if uri.starts_with("postgres") => {
                        "check the user and password in catalog.uri in lake.toml (or LAKE_CATALOG_URI)"
                    }
                    _ => "check catalog.uri in lake.toml (or LAKE_CATALOG_URI), and that the database is up and writable",
                };
                format!("the catalog at {uri} {what} ({detail}); {hint}")
            }
            Place::Storage => {
                let warehouse = match spec {
                    CatalogSpec::Sql { warehouse, .. } => warehouse.clone(),
                    CatalogSpec::Rest { warehouse, .. } => warehouse.clone().unwrap_or_default(),
                };
                let endpoint = spec.props().get("s3.endpoint").cloned();
                let at = endpoint.as_deref().map(|e| format!(" at {e}")).unwrap_or_default();
                let hint = match (&self.kind, warehouse.starts_with("s3")) {
                    (FaultKind::NoBucket, _) => "check the bucket in catalog.warehouse".to_string(),
                    (FaultKind::Denied, true) => super::storage::credentials_hint(spec.props()),
                    (FaultKind::Unreachable | FaultKind::TimedOut, true) => {
                        "check storage s3.endpoint (and catalog.request_timeout_seconds)".to_string()
                    }
                    (FaultKind::Full, _) => "free space there, or point catalog.warehouse elsewhere".to_string(),
                    _ => "check catalog.warehouse in lake.toml (or LAKE_WAREHOUSE) and its permissions".to_string(),
                };
                let what = match self.kind {
                    FaultKind::ReadOnly => "is read-only",
                    FaultKind::Full => "is full",
                    FaultKind::Denied => "refused access",
                    FaultKind::TimedOut => "did not answer in time",
                    FaultKind::NoBucket => "has no such bucket",
                    FaultKind::Unreachable | FaultKind::CatalogSchemaV0 | FaultKind::ServerError => "cannot be reached",
                };
                format!("the warehouse {warehouse}{at} {what} ({detail}); {hint}")
            }
        }
    }
}
