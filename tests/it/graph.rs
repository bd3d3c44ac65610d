//! The model DAG and dbt-style selection, through the public API only.

use std::collections::BTreeSet;
use std::path::PathBuf;

use lake::graph::{Graph, GraphError, select};
use lake::project::model::{Dependency, Materialized, Model, ModelBody, ModelConfig, SourceTable};
use serde_json::json;

use Materialized::{Incremental, Table};

const LAYERS: [&str; 5] = ["raw", "staging", "semantic", "analytics", "marts"];

/// A SQL model at `models/<layer>/<name>.sql`. A dependency with a dot is a source
/// (`raw.orders`), otherwise a ref; the i-th dependency is on line i + 1.
fn model(
    name: &str,
    layer: &str,
    deps: &[&str],
    tags: &[&str],
    materialized: Materialized,
) -> Model {
    Model {
        name: name.to_string(),
        layer: layer.to_string(),
        path: PathBuf::from(format!("models/{layer}/{name}.sql")),
        body: ModelBody::Sql {
            raw_sql: String::new(),
        },
        config: ModelConfig {
            materialized,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            enabled: true,
            ..ModelConfig::default()
        },
        depends_on: deps
            .iter()
            .enumerate()
            .map(|(i, dep)| match dep.split_once('.') {
                Some((source, table)) => Dependency::Source {
                    source: source.to_string(),
                    table: table.to_string(),
                    line: i + 1,
                },
                None => Dependency::Model {
                    name: dep.to_string(),
                    line: i + 1,
                },
            })
            .collect(),
        description: None,
        columns: Vec::new(),
        tests: Vec::new(),
    }
}

fn source(source: &str, table: &str) -> SourceTable {
    SourceTable {
        source: source.to_string(),
        table: table.to_string(),
        description: None,
        path: PathBuf::from("models/sources.yml"),
        tests: Vec::new(),
        freshness: None,
    }
}

fn sources() -> Vec<SourceTable> {
    vec![
        source("raw", "orders"),
        source("raw", "customers"),
        source("raw", "payments"),
    ]
}

fn layers() -> Vec<String> {
    LAYERS.iter().map(|l| l.to_string()).collect()
}

fn build(models: Vec<Model>) -> Result<Graph, GraphError> {
    Graph::build(models, &sources(), &layers())
}

fn fixture_models() -> Vec<Model> {
    let mut models = vec![
        model("raw_orders", "raw", &["raw.orders"], &[], Table),
        model("raw_customers", "raw", &["raw.customers"], &[], Table),
        model(
            "stg_orders",
            "staging",
            &["raw_orders"],
            &["nightly"],
            Incremental,
        ),
        model(
            "stg_customers",
            "staging",
            &["raw_customers"],
            &["nightly"],
            Table,
        ),
        model(
            "stg_payments",
            "staging",
            &["raw.payments"],
            &["finance"],
            Table,
        ),
        model(
            "sem_orders",
            "semantic",
            &["stg_orders", "stg_payments"],
            &["finance"],
            Table,
        ),
        model("sem_customers", "semantic", &["stg_customers"], &[], Table),
        model(
            "an_customer_orders",
            "analytics",
            &["sem_orders", "sem_customers"],
            &[],
            Table,
        ),
        model(
            "an_revenue",
            "analytics",
            &["sem_orders"],
            &["finance", "nightly"],
            Table,
        ),
        model(
            "mart_dashboard",
            "marts",
            &["an_customer_orders", "an_revenue"],
            &[],
            Table,
        ),
        model("mart_finance", "marts", &["an_revenue"], &[], Table),
    ];
    models[4].path = PathBuf::from("models/staging/finance/stg_payments.sql");
    models[9].config.extra.insert("owner".into(), json!("bi"));
    models[10]
        .config
        .extra
        .insert("owner".into(), json!(["bi", "finance"]));
    models
}

fn fixture() -> Graph {
    build(fixture_models()).expect("fixture graph builds")
}

fn names(graph: &Graph, indices: impl IntoIterator<Item = usize>) -> Vec<String> {
    indices
        .into_iter()
        .map(|i| graph.model(i).name.clone())
        .collect()
}

fn args(terms: &[&str]) -> Vec<String> {
    terms.iter().map(|t| t.to_string()).collect()
}

const ALL: &[&str] = &[
    "raw_customers",
    "raw_orders",
    "stg_customers",
    "stg_orders",
    "stg_payments",
    "sem_customers",
    "sem_orders",
    "an_customer_orders",
    "an_revenue",
    "mart_dashboard",
    "mart_finance",
];

#[test]
fn selection_table() {
    let graph = fixture();
    #[rustfmt::skip]
    let table: &[(&[&str], &[&str], &[&str])] = &[
        // Empty selection: everything.
        (&[], &[], ALL),
        (&[""], &[], ALL),
        // Names and globs.
        (&["stg_orders"], &[], &["stg_orders"]),
        (&["stg_*"], &[], &["stg_customers", "stg_orders", "stg_payments"]),
        (&["s?m_*"], &[], &["sem_customers", "sem_orders"]),
        // Ancestors.
        (&["+sem_orders"], &[], &["raw_orders", "stg_orders", "stg_payments", "sem_orders"]),
        (&["1+sem_orders"], &[], &["stg_orders", "stg_payments", "sem_orders"]),
        (&["2+an_revenue"], &[], &["stg_orders", "stg_payments", "sem_orders", "an_revenue"]),
        // Descendants.
        (&["stg_orders+"], &[], &["stg_orders", "sem_orders", "an_customer_orders", "an_revenue", "mart_dashboard", "mart_finance"]),
        (&["stg_orders+1"], &[], &["stg_orders", "sem_orders"]),
        (&["stg_orders+2"], &[], &["stg_orders", "sem_orders", "an_customer_orders", "an_revenue"]),
        // Both ways.
        (&["+sem_customers+"], &[], &["raw_customers", "stg_customers", "sem_customers", "an_customer_orders", "mart_dashboard"]),
        (&["1+sem_customers+1"], &[], &["stg_customers", "sem_customers", "an_customer_orders"]),
        // `@`: descendants and all their ancestors.
        (&["@sem_customers"], &[], &["raw_customers", "raw_orders", "stg_customers", "stg_orders", "stg_payments", "sem_customers", "sem_orders", "an_customer_orders", "an_revenue", "mart_dashboard"]),
        (&["@mart_finance"], &[], &["raw_orders", "stg_orders", "stg_payments", "sem_orders", "an_revenue", "mart_finance"]),
        // Tags.
        (&["tag:nightly"], &[], &["stg_customers", "stg_orders", "an_revenue"]),
        (&["tag:fin*"], &[], &["stg_payments", "sem_orders", "an_revenue"]),
        (&["tag:nightly+1"], &[], &["stg_customers", "stg_orders", "sem_customers", "sem_orders", "an_revenue", "mart_dashboard", "mart_finance"]),
        // Paths: component-wise prefix, file, trailing slash, leading `./`, glob.
        (&["path:models/staging"], &[], &["stg_customers", "stg_orders", "stg_payments"]),
        (&["path:models/staging/finance/"], &[], &["stg_payments"]),
        (&["path:./models/marts/mart_finance.sql"], &[], &["mart_finance"]),
        (&["path:models/*/finance"], &[], &["stg_payments"]),
        // Config.
        (&["config.materialized:incremental"], &[], &["stg_orders"]),
        (&["config.materialized:table,layer:staging"], &[], &["stg_customers", "stg_payments"]),
        (&["config.incremental_strategy:append,tag:nightly"], &[], &["stg_customers", "stg_orders", "an_revenue"]),
        (&["config.tags:finance"], &[], &["stg_payments", "sem_orders", "an_revenue"]),
        (&["config.owner:bi"], &[], &["mart_dashboard", "mart_finance"]),
        (&["config.owner:finance"], &[], &["mart_finance"]),
        // Layers: bare name and `layer:`; operators apply to every model matched.
        (&["staging"], &[], &["stg_customers", "stg_orders", "stg_payments"]),
        (&["layer:staging"], &[], &["stg_customers", "stg_orders", "stg_payments"]),
        (&["staging+"], &[], &["stg_customers", "stg_orders", "stg_payments", "sem_customers", "sem_orders", "an_customer_orders", "an_revenue", "mart_dashboard", "mart_finance"]),
        (&["+layer:semantic"], &[], &["raw_customers", "raw_orders", "stg_customers", "stg_orders", "stg_payments", "sem_customers", "sem_orders"]),
        // Sources: direct readers.
        (&["source:raw.payments"], &[], &["stg_payments"]),
        (&["source:raw"], &[], &["raw_customers", "raw_orders", "stg_payments"]),
        (&["source:raw.orders+"], &[], &["raw_orders", "stg_orders", "sem_orders", "an_customer_orders", "an_revenue", "mart_dashboard", "mart_finance"]),
        // Space = union, several arguments = union, comma = intersection.
        (&["mart_finance stg_orders"], &[], &["stg_orders", "mart_finance"]),
        (&["mart_finance", "raw_orders  sem_customers"], &[], &["raw_orders", "sem_customers", "mart_finance"]),
        (&["tag:nightly,staging"], &[], &["stg_customers", "stg_orders"]),
        (&["tag:finance,+mart_finance"], &[], &["stg_payments", "sem_orders", "an_revenue"]),
        // Exclude.
        (&["staging+"], &["marts"], &["stg_customers", "stg_orders", "stg_payments", "sem_customers", "sem_orders", "an_customer_orders", "an_revenue"]),
        (&[], &["tag:nightly"], &["raw_customers", "raw_orders", "stg_payments", "sem_customers", "sem_orders", "an_customer_orders", "mart_dashboard", "mart_finance"]),
        (&["+mart_dashboard"], &["+sem_orders", "sem_customers"], &["raw_customers", "stg_customers", "an_customer_orders", "an_revenue", "mart_dashboard"]),
    ];
    for (sel, excl, expected) in table {
        let got = select(&graph, &args(sel), &args(excl))
            .unwrap_or_else(|e| panic!("select {sel:?} exclude {excl:?}: {e}"));
        assert_eq!(
            names(&graph, got),
            *expected,
            "select {sel:?} exclude {excl:?}"
        );
    }
}

fn select_err(sel: &[&str], excl: &[&str]) -> String {
    let graph = fixture();
    match select(&graph, &args(sel), &args(excl)) {
        Ok(got) => panic!("select {sel:?} should fail, got {:?}", names(&graph, got)),
        Err(e) => e.to_string(),
    }
}

#[test]
fn exclude_matching_nothing_or_everything_is_an_error() {
    // Like --select: a typo in --exclude would otherwise run more than meant.
    assert_eq!(
        select_err(&["stg_orders"], &["stg_ordrs"]),
        "--exclude selector 'stg_ordrs' matched no model; did you mean 'stg_orders'?"
    );
    assert_eq!(
        select_err(&[], &["*"]),
        "--exclude left no model to run (nothing selected)"
    );
    assert_eq!(
        select_err(&["staging"], &["staging"]),
        "--exclude left no model to run (nothing selected)"
    );
}

#[test]
fn selector_matching_nothing_names_it() {
    assert_eq!(
        select_err(&["stg_ordrs"], &[]),
        "selector 'stg_ordrs' matched no model; did you mean 'stg_orders'?"
    );
    assert_eq!(
        select_err(&["mart_finance +stg_ordrs+"], &[]),
        "selector '+stg_ordrs+' matched no model; did you mean '+stg_orders+'?"
    );
    assert_eq!(
        select_err(&["tag:nightli"], &[]),
        "selector 'tag:nightli' matched no model; did you mean 'tag:nightly'?"
    );
    assert_eq!(
        select_err(&["qqqq"], &[]),
        "selector 'qqqq' matched no model"
    );
    assert_eq!(
        select_err(&["tag:nightly,marts"], &[]),
        "selector 'tag:nightly,marts' matched no model"
    );
    // Paths match whole components only.
    assert_eq!(
        select_err(&["path:models/stag"], &[]),
        "selector 'path:models/stag' matched no model"
    );
}

#[test]
fn malformed_selectors() {
    let unknown =
        "unknown selector method 'foo' in 'foo:bar'; known: tag, path, layer, config.<key>, source";
    assert_eq!(select_err(&["foo:bar"], &[]), unknown);
    // Exclude terms are parsed as strictly as select terms.
    assert_eq!(select_err(&[], &["foo:bar"]), unknown);
    assert_eq!(
        select_err(&["tag:"], &[]),
        "invalid selector 'tag:': 'tag:' needs a value, e.g. 'tag:nightly'"
    );
    assert_eq!(
        select_err(&["+"], &[]),
        "invalid selector '+': a graph operator needs a model, e.g. '+stg_orders' or 'stg_orders+'"
    );
    assert_eq!(
        select_err(&["@+stg_orders"], &[]),
        "invalid selector '@+stg_orders': '@' already selects all ancestors; drop the leading '+'"
    );
    assert!(select_err(&["config:x"], &[]).contains("'config' needs a key"));
}

fn build_err(models: Vec<Model>) -> String {
    match build(models) {
        Ok(_) => panic!("graph should not build"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn cycle_prints_its_path() {
    let models = vec![
        model("d", "marts", &["a"], &[], Table),
        model("c", "staging", &["b"], &[], Table),
        model("b", "staging", &["a"], &[], Table),
        model("a", "staging", &["c"], &[], Table),
    ];
    assert_eq!(
        build_err(models),
        "dependency cycle: staging.a -> staging.b -> staging.c -> staging.a"
    );

    let models = vec![model("a", "staging", &["a"], &[], Table)];
    assert_eq!(
        build_err(models),
        "dependency cycle: staging.a -> staging.a"
    );
}

#[test]
fn unknown_ref_names_file_line_and_suggestion() {
    let mut models = fixture_models();
    models.push(model(
        "stg_x",
        "staging",
        &["stg_orders", "raw.orders", "stg_ordrs"],
        &[],
        Table,
    ));
    assert_eq!(
        build_err(models),
        "models/staging/stg_x.sql:3: ref('stg_ordrs') names no model; did you mean 'stg_orders'?"
    );

    let mut models = fixture_models();
    models.push(model("stg_x", "staging", &["zzz"], &[], Table));
    assert_eq!(
        build_err(models),
        "models/staging/stg_x.sql:1: ref('zzz') names no model"
    );
}

#[test]
fn unknown_source_names_file_line_and_suggestion() {
    let mut models = fixture_models();
    models.push(model("raw_x", "raw", &["raw.ordrs"], &[], Table));
    assert_eq!(
        build_err(models),
        "models/raw/raw_x.sql:1: source('raw','ordrs') names no declared source table; did you mean 'raw.orders'?"
    );
}

fn back_edge_models(allow: bool) -> Vec<Model> {
    let mut stg_x = model(
        "stg_x",
        "staging",
        &["raw.orders", "raw.customers", "raw.payments", "m"],
        &[],
        Table,
    );
    stg_x.config.allow_back_edges = allow;
    vec![
        model("m", "marts", &[], &[], Table),
        stg_x,
        model("stg_y", "staging", &["stg_x"], &[], Table),
    ]
}

#[test]
fn back_edge_is_rejected() {
    assert_eq!(
        build_err(back_edge_models(false)),
        "models/staging/stg_x.sql:4: staging.stg_x reads marts.m from a later layer (marts); models \
         may read only from their own or earlier layers (set allow_back_edges = true in the model's \
         config to permit it)"
    );
}

#[test]
fn back_edge_allowed_by_config() {
    let graph = build(back_edge_models(true)).expect("allow_back_edges permits the edge");
    let all: BTreeSet<usize> = (0..graph.models().len()).collect();
    // Dependencies come before layer rank.
    assert_eq!(
        names(&graph, graph.run_order(&all)),
        ["m", "stg_x", "stg_y"]
    );
    // Order holds through models outside the subset: stg_y depends on m via stg_x.
    let subset: BTreeSet<usize> = ["m", "stg_y"]
        .iter()
        .filter_map(|n| graph.index_of(n))
        .collect();
    assert_eq!(names(&graph, graph.run_order(&subset)), ["m", "stg_y"]);
}

#[test]
fn duplicate_model_names_both_files() {
    let models = vec![
        model("x", "staging", &[], &[], Table),
        model("x", "marts", &[], &[], Table),
    ];
    assert_eq!(
        build_err(models),
        "two models are named 'x': models/staging/x.sql and models/marts/x.sql; model names must be unique"
    );
}

#[test]
fn run_order_is_deterministic() {
    let expected: Vec<String> = ALL.iter().map(|s| s.to_string()).collect();
    let mut models = fixture_models();
    for rotation in 0..models.len() {
        models.rotate_left(1);
        let mut shuffled = models.clone();
        if rotation % 2 == 1 {
            shuffled.reverse();
        }
        let graph = build(shuffled).expect("builds");
        let all: BTreeSet<usize> = (0..graph.models().len()).collect();
        assert_eq!(names(&graph, graph.run_order(&all)), expected);
        assert_eq!(
            names(&graph, select(&graph, &[], &[]).expect("selects")),
            expected
        );
    }

    // Within a layer, a dependency overrides name order; independent models go by name.
    let models = vec![
        model("b", "staging", &["c"], &[], Table),
        model("c", "staging", &[], &[], Table),
        model("a", "staging", &[], &[], Table),
    ];
    let graph = build(models).expect("builds");
    let all: BTreeSet<usize> = (0..3).collect();
    assert_eq!(names(&graph, graph.run_order(&all)), ["a", "c", "b"]);
}

#[test]
fn navigation() {
    let graph = fixture();
    let idx = |name: &str| graph.index_of(name).expect("model exists");
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(graph.index_of("nope"), None);
    assert_eq!(graph.layer_rank("semantic"), Some(2));
    assert_eq!(graph.layer_rank("nope"), None);
    assert_eq!(
        sorted(names(&graph, graph.parents(idx("sem_orders")))),
        ["stg_orders", "stg_payments"]
    );
    assert_eq!(
        sorted(names(&graph, graph.children(idx("an_revenue")))),
        ["mart_dashboard", "mart_finance"]
    );
    assert_eq!(
        sorted(names(&graph, graph.ancestors(idx("an_revenue")))),
        ["raw_orders", "sem_orders", "stg_orders", "stg_payments"]
    );
    assert_eq!(
        sorted(names(&graph, graph.descendants(idx("sem_customers")))),
        ["an_customer_orders", "mart_dashboard"]
    );
    assert!(graph.descendants(idx("mart_finance")).is_empty());
}
