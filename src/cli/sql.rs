//! `lake sql`: ad-hoc, read-only DataFusion SQL over every table in the catalog, at each
//! table's current snapshot, with `snapshot('ns.table', id)` for time travel; results to the
//! terminal or, with `--out FILE`, to a Parquet, CSV or JSON file outside the lakehouse.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use super::project_cmds::connect;
use super::{CliResult, ExitCodeExt, GlobalArgs, SqlFormat};
use crate::engine::session::{LazyCatalog, new_session, read_only_query};
use crate::project::Project;

pub(super) async fn sql(g: &GlobalArgs, query: &str, format: Option<SqlFormat>, out: Option<&Path>) -> CliResult {
    let config = super::project_cmds::load_config(g)?;
    let target = match out {
        Some(path) => Some(OutFile::check(path, format, &config.catalog).usage()?),
        None => None,
    };
    let project = Project {
        config,
        models: Vec::new(),
        sources: Vec::new(),
        seeds: Vec::new(),
        singular_tests: Vec::new(),
        macros: Default::default(),
    };
    let lakehouse = connect(&project).await?;
    let ctx = new_session();
    LazyCatalog::register(&ctx, &lakehouse).await.environment()?;
    // A refused statement and a query that does not plan are both usage errors (exit 2).
    let df = read_only_query(&ctx, query).await.usage()?;
    let schema: SchemaRef = std::sync::Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await.map_err(|e| anyhow!("SQL error: {e}")).usage()?;
    match target {
        Some(file) => file.write(schema, &batches).environment()?,
        None => {
            let text = render(format.unwrap_or(SqlFormat::Table), schema, &batches).usage()?;
            std::io::stdout().write_all(&text).map_err(anyhow::Error::from).environment()?;
        }
    }
    Ok(0)
}

/// The result as text in `format`; an empty result still has its header (CSV, table) or `[]` (JSON).
fn render(format: SqlFormat, schema: SchemaRef, batches: &[RecordBatch]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    let empty = [RecordBatch::new_empty(schema)];
    let batches = if batches.is_empty() { &empty[..] } else { batches };
    match format {
        SqlFormat::Table => {
            let text = arrow::util::pretty::pretty_format_batches(batches)?;
            out.extend_from_slice(text.to_string().as_bytes());
            out.push(b'\n');
        }
        SqlFormat::Csv => {
            let mut w = arrow::csv::WriterBuilder::new().with_header(true).build(&mut out);
            for b in batches {
                w.write(b)?;
            }
        }
        SqlFormat::Json => {
            let mut w = arrow::json::ArrayWriter::new(&mut out);
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
            if out.is_empty() {
                out.extend_from_slice(b"[]");
            }
            out.push(b'\n');
        }
        SqlFormat::Parquet => bail!("--format parquet needs --out FILE"),
    }
    Ok(out)
}

/// A file `lake sql --out` may write: never in the warehouse, never the catalog database.
struct OutFile {
    path: PathBuf,
    format: SqlFormat,
}

impl OutFile {
    fn check(path: &Path, format: Option<SqlFormat>, catalog: &crate::lakehouse::catalog::CatalogSpec) -> anyhow::Result<Self> {
        let format = match format {
            Some(f) => f,
            None => match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
                Some("parquet") => SqlFormat::Parquet,
                Some("csv") => SqlFormat::Csv,
                Some("json") => SqlFormat::Json,
                _ => bail!(
                    "--out {}: cannot tell the format from the extension; use .parquet, .csv or .json, or --format",
                    path.display()
                ),
            },
        };
        if format == SqlFormat::Table {
            bail!("--out writes parquet, csv or json, not a table");
        }
        let absolute = std::path::absolute(path)?;
        let parent = absolute.parent().unwrap_or(Path::new("/"));
        let parent = parent
            .canonicalize()
            .with_context(|| format!("--out {}: the folder {} does not exist", path.display(), parent.display()))?;
        let resolved = parent.join(absolute.file_name().unwrap_or_default());
        if let Some(owned) = catalog.owned_local_path(&resolved) {
            bail!(
                "--out {}: refusing to write inside the lakehouse ({owned}); choose a path outside the warehouse and the catalog",
                path.display()
            );
        }
        Ok(OutFile { path: resolved, format })
    }

    /// Write through a temporary file renamed into place, so a failed write leaves no half file.
    fn write(&self, schema: SchemaRef, batches: &[RecordBatch]) -> anyhow::Result<()> {
        let tmp = self.path.with_file_name(format!(
            ".{}.lake-tmp",
            self.path.file_name().unwrap_or_default().to_string_lossy()
        ));
        let result = (|| -> anyhow::Result<()> {
            let file = std::fs::File::create(&tmp)?;
            match self.format {
                SqlFormat::Parquet => {
                    let mut w = parquet::arrow::ArrowWriter::try_new(file, schema, None)?;
                    for b in batches {
                        w.write(b)?;
                    }
                    w.close()?;
                }
                format => {
                    let mut file = file;
                    file.write_all(&render(format, schema, batches)?)?;
                    file.sync_all()?;
                }
            }
            std::fs::rename(&tmp, &self.path)?;
            Ok(())
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.with_context(|| format!("cannot write {}", self.path.display()))
    }
}
