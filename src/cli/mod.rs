//! The command line: clap definitions, exit codes, and one module per command.
//!
//! Exit codes: 0 success; 1 a model, seed or test failed; 2 a project or usage error (bad
//! `lake.toml`, template, graph or selector); 3 the catalog or storage could not be reached.

mod build;
mod dag;
mod demo;
mod docs;
mod doctor;
mod ingest;
mod inspect;
mod init;
mod lineage;
mod maintain;
mod project_cmds;
mod resolve;
mod source;
mod sql;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use ingest::IngestArgs;

use crate::engine::rust_model::Registry;
use crate::run::IndirectSelection;
use crate::run::report::LogFormat;

/// Exit code: success.
pub const EXIT_OK: i32 = 0;
/// Exit code: a model, seed or data test failed.
pub const EXIT_FAILED: i32 = 1;
/// Exit code: project or usage error.
pub const EXIT_USAGE: i32 = 2;
/// Exit code: the catalog or storage failed.
pub const EXIT_ENVIRONMENT: i32 = 3;

/// An error with the exit code it maps to.
#[derive(Debug)]
pub struct CliError {
    pub code: i32,
    pub error: anyhow::Error,
}

pub type CliResult<T = i32> = Result<T, CliError>;

/// Tag an error with its exit code.
pub trait ExitCodeExt<T> {
    fn usage(self) -> CliResult<T>;
    fn environment(self) -> CliResult<T>;
}

/// The catalog of the command being run, once connected: lets the error printer name the
/// setting to fix when the catalog or storage fails (see [`crate::lakehouse::fault`]).
static CATALOG: std::sync::OnceLock<crate::lakehouse::catalog::CatalogSpec> = std::sync::OnceLock::new();

pub(crate) fn remember_catalog(spec: &crate::lakehouse::catalog::CatalogSpec) {
    let _ = CATALOG.set(spec.clone());
}

/// The message printed for a failed command: a catalog or storage fault as one line naming
/// the setting to fix (the full chain at `LAKE_LOG=debug`), anything else with its causes;
/// secrets scrubbed either way.
fn error_message(code: i32, error: &anyhow::Error) -> String {
    let fault = crate::lakehouse::fault::classify(error);
    let text = match (code, fault, CATALOG.get()) {
        (EXIT_ENVIRONMENT, Some(fault), Some(spec)) => {
            tracing::debug!("{error:#}");
            fault.line(spec)
        }
        _ => format!("{error:#}"),
    };
    crate::project::secrets::scrub(&text)
}

impl<T, E: Into<anyhow::Error>> ExitCodeExt<T> for Result<T, E> {
    fn usage(self) -> CliResult<T> {
        self.map_err(|e| CliError {
            code: EXIT_USAGE,
            error: e.into(),
        })
    }
    fn environment(self) -> CliResult<T> {
        self.map_err(|e| CliError {
            code: EXIT_ENVIRONMENT,
            error: e.into(),
        })
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "lake",
    version,
    about = "Keep an Apache Iceberg lakehouse fresh: templated SQL and Rust models, a DAG, atomic commits.",
    after_help = "Exit codes: 0 success, 1 a model/seed/test failed, 2 project or usage error, 3 catalog or storage error."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Project folder (holding lake.toml).
    #[arg(long, global = true, env = "LAKE_PROJECT_DIR", default_value = ".")]
    pub project_dir: PathBuf,
    /// Named target from lake.toml [targets.NAME].
    #[arg(long, global = true)]
    pub target: Option<String>,
    /// Project variables as YAML or JSON, e.g. '{"currency": "EUR"}'.
    #[arg(long, global = true)]
    pub vars: Option<String>,
    /// Output: text (progress on a terminal) or json (one object per line).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "LAKE_LOG_FORMAT")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Args, Default)]
pub struct SelectArgs {
    /// Nodes to select (dbt grammar: name, stg_*, +m, m+, n+m, m+n, @m, tag:x, path:p, layer:l, config.k:v).
    #[arg(long, short = 's', num_args = 1..)]
    pub select: Vec<String>,
    /// Nodes to leave out (same grammar).
    #[arg(long, num_args = 1..)]
    pub exclude: Vec<String>,
}

#[derive(Debug, Clone, Args, Default)]
pub struct ExecArgs {
    /// Rebuild incremental models (and reload seeds) from scratch.
    #[arg(long)]
    pub full_refresh: bool,
    /// Models run in parallel (default: run.threads in lake.toml, else 4).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Stop at the first failure.
    #[arg(long)]
    pub fail_fast: bool,
    /// After each model, maintain its table (compact small files, expire snapshots, remove orphans).
    #[arg(long)]
    pub maintain: bool,
    /// Rebuild `table` models even when their inputs and SQL are unchanged since their last build.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum DemoCommand {
    /// Realistic Shopify, Stripe and HubSpot webhook events: NDJSON files (--out) or signed
    /// posts to a running `lake ingest` webhook server (--post).
    Generate(demo::GenerateArgs),
}

#[derive(Debug, Subcommand)]
pub enum DagCommand {
    /// An Airflow DAG (Python) from the project graph: a task per model or layer, dependencies
    /// exactly the model DAG, ingest, seed and freshness tasks first; only exit code 3 retried.
    Airflow(dag::AirflowArgs),
}

#[derive(Debug, Subcommand)]
pub enum SourceCommand {
    /// How long ago each source table was last loaded, against its freshness block (exit 1 when
    /// one is past error_after).
    Freshness {
        /// Sources to check: source:raw, source:raw.orders or raw.orders (default all).
        #[arg(long, short = 's', num_args = 1..)]
        select: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new project that builds at once.
    Init {
        /// Folder to create (default: the current folder).
        dir: Option<PathBuf>,
    },
    /// Load seed files (CSV/NDJSON under seeds/) into raw tables; each file once.
    Seed {
        /// Seeds to load (by name; default all).
        #[arg(long, short = 's', num_args = 1..)]
        select: Vec<String>,
        /// Replace each seed table with all of its files.
        #[arg(long)]
        full_refresh: bool,
    },
    /// Run the selected models into Iceberg tables.
    Run {
        #[command(flatten)]
        select: SelectArgs,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// The demo pipeline's event generator: `lake demo generate`.
    Demo {
        #[command(subcommand)]
        action: DemoCommand,
    },
    /// Source checks: `lake source freshness`.
    Source {
        #[command(subcommand)]
        action: SourceCommand,
    },
    /// Run data tests of the selected models (and sources, when nothing is selected).
    Test {
        #[command(flatten)]
        select: SelectArgs,
        /// Singular tests a selection takes in: those reading any selected model (eager), only
        /// selected models (cautious), or selected models and models upstream of them (buildable).
        #[arg(long, value_enum, default_value_t)]
        indirect_selection: IndirectSelection,
    },
    /// Seed, then run each selected model followed by its tests; a failed test skips descendants.
    Build {
        #[command(flatten)]
        select: SelectArgs,
        #[command(flatten)]
        exec: ExecArgs,
        /// Singular tests a selection takes in: those reading any selected model (eager), only
        /// selected models (cautious), or selected models and models upstream of them (buildable).
        #[arg(long, value_enum, default_value_t)]
        indirect_selection: IndirectSelection,
    },
    /// Generate a scheduler's DAG from the project graph: `lake dag airflow`.
    Dag {
        #[command(subcommand)]
        action: DagCommand,
    },
    /// List the selected models in run order.
    Ls {
        #[command(flatten)]
        select: SelectArgs,
        /// name or json.
        #[arg(long, value_enum, default_value_t = LsOutput::Name)]
        output: LsOutput,
    },
    /// Column lineage from the models' query plans: where a column's values come from (upstream,
    /// the default) or every column it feeds (--downstream).
    Lineage(lineage::LineageArgs),
    /// A documentation site: every table and model with its SQL, columns, lineage, tests, last
    /// run and table facts, and the DAG drawn (target/docs/index.html; --serve to serve it).
    Docs(docs::DocsArgs),
    /// Render the selected models' SQL into target/compiled/.
    Compile {
        #[command(flatten)]
        select: SelectArgs,
    },
    /// Run a SQL query over every table in the catalog (time travel: snapshot('ns.t', id)).
    Sql {
        /// The query (read-only: SELECT, WITH, VALUES or EXPLAIN).
        query: String,
        /// table (default on the terminal), csv or json; with --out also parquet (default: from the extension).
        #[arg(long, value_enum)]
        format: Option<SqlFormat>,
        /// Write the result to this file (.parquet, .csv or .json) instead of stdout; never inside the warehouse or catalog.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Show a table: schema, partitioning, snapshots and their summaries.
    Show {
        /// namespace.table
        table: String,
    },
    /// Show the stored watermark of each selected incremental model.
    Watermarks {
        #[command(flatten)]
        select: SelectArgs,
    },
    /// Compact small files, expire old snapshots and remove orphan files of the selected models' tables.
    Maintain {
        #[command(flatten)]
        select: SelectArgs,
        /// Report what would be done; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// List a table's snapshots, oldest first.
    Snapshots {
        /// namespace.table
        table: String,
    },
    /// Make a table read as it did at an earlier snapshot (committed as a new snapshot).
    Rollback {
        /// namespace.table
        table: String,
        /// The snapshot id to restore.
        #[arg(long)]
        to: i64,
    },
    /// Check the catalog and warehouse: reachable, authenticated, writable, schema version, clock, table metadata.
    Doctor,
    /// Land records from sources in raw Iceberg tables, exactly once, with dead letters in <table>__errors.
    Ingest(IngestArgs),
    /// Resolve entities in one file (CSV, Parquet or NDJSON): writes pairs.csv and clusters.csv.
    Resolve {
        /// The records: .csv (`,` or `, ` separated, quoted fields), .parquet or .ndjson.
        #[arg(long)]
        input: PathBuf,
        /// The column that identifies a record.
        #[arg(long)]
        id: String,
        /// Roles mapped to columns: email=COL,phone=COL,first_name=COL,last_name=COL,dob=COL,postcode=COL,address=COL (any subset).
        #[arg(long, num_args = 1..)]
        columns: Vec<String>,
        /// Settings file (TOML: normalization, rules, scoring); without it, the probabilistic scoring over the mapped roles.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Folder for pairs.csv, clusters.csv and stats.json.
        #[arg(long, required_unless_present = "explain")]
        output: Option<PathBuf>,
        /// Print each comparison level and match weight of two records (by id) instead.
        #[arg(long, num_args = 2, value_names = ["ID_L", "ID_R"])]
        explain: Option<Vec<String>>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LsOutput {
    Name,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SqlFormat {
    Table,
    Csv,
    Json,
    Parquet,
}

/// Entry point for the `lake` binary and for team binaries with their own Rust models.
///
/// ```no_run
/// let mut registry = lake::builtins::registry();
/// // registry.register("my_model", |ctx| { ... });
/// std::process::exit(lake::cli::main_with_registry(registry));
/// ```
pub fn main_with_registry(registry: Registry) -> i32 {
    main_with(registry, || {})
}

/// [`main_with_registry`], calling `batch` first, before any other thread starts, for a command
/// that runs to its end and may keep what memory it freed until then: every command but
/// `lake ingest` (which runs until stopped, or holds to its stated memory bound with `--once`)
/// and `lake docs --serve`. The `lake` binary uses it to keep the memory its allocator frees
/// for the rest of the run instead of giving it back to the system.
pub fn main_with(registry: Registry, batch: fn()) -> i32 {
    let cli = Cli::parse();
    let gives_memory_back = match &cli.command {
        Command::Ingest(_) => true,
        Command::Docs(args) => args.serve.is_some(),
        _ => false,
    };
    if !gives_memory_back {
        batch();
    }
    if !matches!(cli.command, Command::Ingest(_)) {
        quiet_on_closed_pipe();
    }
    init_logging(cli.global.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return EXIT_ENVIRONMENT;
        }
    };
    let format = cli.global.log_format;
    match runtime.block_on(dispatch(cli, registry)) {
        Ok(code) => code,
        Err(CliError { code, error }) => {
            let message = error_message(code, &error);
            match format {
                LogFormat::Json => println!(
                    "{}",
                    serde_json::json!({"event": "error", "exit_code": code, "message": message})
                ),
                LogFormat::Text => eprintln!("error: {message}"),
            }
            code
        }
    }
}

async fn dispatch(cli: Cli, registry: Registry) -> CliResult {
    let g = cli.global;
    match cli.command {
        Command::Init { dir } => init::init(dir.unwrap_or_else(|| g.project_dir.clone())),
        Command::Seed { select, full_refresh } => build::seed(&g, &select, full_refresh).await,
        Command::Run { select, exec } => build::run(&g, &select, &exec, registry, None).await,
        Command::Build { select, exec, indirect_selection } => {
            build::run(&g, &select, &exec, registry, Some(indirect_selection)).await
        }
        Command::Test { select, indirect_selection } => build::test(&g, &select, registry, indirect_selection).await,
        Command::Source { action: SourceCommand::Freshness { select } } => source::freshness(&g, &select).await,
        Command::Demo { action: DemoCommand::Generate(args) } => demo::generate(&g, args).await,
        Command::Dag { action: DagCommand::Airflow(args) } => dag::airflow(&g, &args),
        Command::Ls { select, output } => project_cmds::ls(&g, &select, output),
        Command::Lineage(args) => lineage::lineage(&g, &args).await,
        Command::Docs(args) => docs::docs(&g, &args).await,
        Command::Compile { select } => project_cmds::compile(&g, &select).await,
        Command::Sql { query, format, out } => sql::sql(&g, &query, format, out.as_deref()).await,
        Command::Show { table } => inspect::show(&g, &table).await,
        Command::Watermarks { select } => inspect::watermarks(&g, &select).await,
        Command::Maintain { select, dry_run } => maintain::maintain(&g, &select, dry_run).await,
        Command::Snapshots { table } => maintain::snapshots(&g, &table).await,
        Command::Rollback { table, to } => maintain::rollback(&g, &table, to).await,
        Command::Doctor => doctor::doctor(&g).await,
        Command::Ingest(args) => ingest::ingest(&g, args).await,
        Command::Resolve { input, id, columns, config, output, explain } => {
            let args = resolve::ResolveArgs { input, id, columns, config, output, explain };
            tokio::task::block_in_place(|| resolve::resolve(&g, &args))
        }
    }
}

/// `lake show t | head`: when the reader of stdout goes away, end quietly as Unix tools do
/// (the default SIGPIPE action) instead of panicking in `println!`. Sockets are unaffected
/// (Rust writes to them with MSG_NOSIGNAL); `lake ingest`, a long-running server, keeps
/// ignoring the signal.
fn quiet_on_closed_pipe() {
    // SAFETY: called before any thread is started; resets one signal's disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn init_logging(format: LogFormat) {
    // Libraries' retry chatter (OpenDAL retries every temporary storage error) stays at debug:
    // the one line that matters is the error `lake` prints.
    let filter = tracing_subscriber::EnvFilter::try_from_env("LAKE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,opendal=error,hyper=error,reqwest=error,sqlx=error"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.without_time().try_init(),
    };
}
