//! The lakehouse: Iceberg catalogs, Parquet data-file writing, snapshot commits and the `lake.*`
//! summary keys (watermarks, seed files). It knows nothing about models or templates.

pub mod catalog;
pub mod catalog_schema;
pub mod commit;
pub mod deletes;
pub mod doctor;
pub mod fault;
pub mod maintenance;
pub mod manifests;
pub mod pointer;
pub mod reader;
pub mod rest_auth;
pub mod schema;
pub mod storage;
pub mod summary;
pub mod writer;
