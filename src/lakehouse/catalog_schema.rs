//! The layout of a SQL catalog's tables: Iceberg's JdbcCatalog schema V1 (what
//! iceberg-catalog-sql, PyIceberg and `lake` use) or the older V0.
//!
//! V0 `iceberg_tables` has no `iceberg_type` column (V1 added it to keep views beside tables).
//! Every table query of iceberg-catalog-sql and `lake`'s compare-and-swap name that column, so
//! on a V0 database they would fail with a bare SQL error. [`check`] finds out first and fails
//! with [`CatalogSchemaV0`], whose message gives the migration Iceberg's own JdbcCatalog runs
//! (`JdbcUtil.V1_UPDATE_CATALOG_SQL`). `lake` never migrates a catalog on its own: other
//! engines may share it.

use sqlx::AnyPool;

/// The statement that upgrades a V0 catalog to V1 (Iceberg's `JdbcUtil.V1_UPDATE_CATALOG_SQL`;
/// Java's JdbcCatalog runs it itself with `jdbc.schema-version=V1`). Rows already there keep a
/// NULL `iceberg_type`, which every V1 reader takes as a table.
pub const V1_MIGRATION: &str = "ALTER TABLE iceberg_tables ADD COLUMN iceberg_type VARCHAR(5)";

/// The catalog database has the JdbcCatalog V0 layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogSchemaV0;

impl std::fmt::Display for CatalogSchemaV0 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "has the old JdbcCatalog V0 layout (iceberg_tables has no iceberg_type column); migrate it to V1 \
             with `{V1_MIGRATION}` on the database that catalog.uri names (what Iceberg's JdbcCatalog does \
             with jdbc.schema-version=V1), then run again"
        )
    }
}

impl std::error::Error for CatalogSchemaV0 {}

/// Which layout the catalog's `iceberg_tables` has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaVersion {
    V0,
    V1,
}

/// The layout of `iceberg_tables` (which must exist: iceberg-catalog-sql creates it).
pub async fn version(pool: &AnyPool) -> Result<SchemaVersion, sqlx::Error> {
    match sqlx::query("SELECT iceberg_type FROM iceberg_tables WHERE 1 = 0").fetch_optional(pool).await {
        Ok(_) => Ok(SchemaVersion::V1),
        Err(sqlx::Error::Database(db)) if is_missing_column(db.code().as_deref(), db.message()) => Ok(SchemaVersion::V0),
        Err(e) => Err(e),
    }
}

/// Fail with [`CatalogSchemaV0`] on a V0 catalog.
pub async fn check(pool: &AnyPool) -> anyhow::Result<()> {
    match version(pool).await? {
        SchemaVersion::V1 => Ok(()),
        SchemaVersion::V0 => Err(CatalogSchemaV0.into()),
    }
}

/// Postgres `undefined_column` (42703); SQLite reports it only in words.
fn is_missing_column(code: Option<&str>, message: &str) -> bool {
    code == Some("42703") || message.contains("no such column")
}
