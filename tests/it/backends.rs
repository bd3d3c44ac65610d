//! One end-to-end scenario on the three backends a team moves between by changing `lake.toml`:
//! the embedded SQLite catalog with a local warehouse, a Postgres catalog with an S3 warehouse
//! (moto), and an Iceberg REST catalog (rustberg) with an S3 warehouse (moto). Seeds, a build,
//! an incremental append, a merge, a full refresh, a schema change, an ad-hoc ingest, maintenance
//! (expiry and orphan removal) and a rollback run phase by phase on all three; after each phase
//! every table's fingerprint (columns, row count, sums, a digest of all rows) must be the same
//! everywhere. Then PyIceberg and DuckDB read every table of each backend and agree with `lake sql`.
//! moto checks every request's signature, so lake, rustberg and both readers really use the keys.

use std::collections::BTreeMap;

use crate::support::postgres::PgServer;
use crate::support::readers::assert_readers_match;
use crate::support::rest_proxy::{ProxyOptions, RestProxy};
use crate::support::rustberg::{Rustberg, S3Warehouse};
use crate::support::s3::Moto;
use crate::support::{Output, TestProject};


/// One table → its fingerprint.
type Fingerprint = BTreeMap<String, String>;

/// A project on one backend.
struct Backend<'a> {
    name: &'static str,
    p: TestProject,
    /// For S3 warehouses: the server and the bucket.
    s3: Option<(&'a Moto, &'static str)>,
    /// PyIceberg catalog properties for the readers (`None`: the embedded SQLite catalog).
    reader_catalog: Option<serde_json::Value>,
}

fn storage_toml(moto: &Moto) -> String {
    format!(
        "[storage]\n\"s3.endpoint\" = \"{}\"\n\"s3.region\" = \"us-east-1\"\n\"s3.path-style-access\" = \"true\"\n\
         \"s3.access-key-id\" = \"{}\"\n\"s3.secret-access-key\" = \"${{S3_SECRET}}\"\n",
        moto.endpoint(),
        moto.access_key_id
    )
}

fn reader_props(moto: &Moto, catalog: serde_json::Value) -> serde_json::Value {
    let mut props = catalog;
    let s3 = serde_json::json!({
        "s3.endpoint": moto.endpoint(), "s3.region": "us-east-1", "s3.path-style-access": "true",
        "s3.access-key-id": moto.access_key_id, "s3.secret-access-key": moto.secret_access_key,
    });
    props.as_object_mut().unwrap().extend(s3.as_object().unwrap().clone());
    props
}

impl<'a> Backend<'a> {
    fn local() -> Self {
        let p = TestProject::new();
        write_project(&p);
        Backend { name: "sqlite+local", p, s3: None, reader_catalog: None }
    }

    fn postgres_s3(pg: &PgServer, moto: &'a Moto) -> Self {
        let url = pg.database("e2e");
        moto.create_bucket("lake-pg");
        let p = TestProject::new();
        write_project(&p);
        p.write(
            "lake.toml",
            &format!("name = \"e2e\"\n[catalog]\nuri = \"{url}\"\nwarehouse = \"s3://lake-pg/wh\"\n{}", storage_toml(moto)),
        );
        let catalog = serde_json::json!({
            "type": "sql",
            "uri": url.replace("postgres://", "postgresql+psycopg2://"),
            "warehouse": "s3://lake-pg/wh",
        });
        Backend { name: "postgres+s3", p, s3: Some((moto, "lake-pg")), reader_catalog: Some(reader_props(moto, catalog)) }
    }

    fn rest_s3(server: &Rustberg, moto: &'a Moto) -> Self {
        let p = TestProject::new();
        write_project(&p);
        p.write(
            "lake.toml",
            &format!("name = \"e2e\"\n[catalog]\ntype = \"rest\"\nuri = \"{}\"\n{}", server.uri(), storage_toml(moto)),
        );
        let catalog = serde_json::json!({"type": "rest", "uri": server.uri()});
        Backend { name: "rest+s3", p, s3: Some((moto, "lake-rest")), reader_catalog: Some(reader_props(moto, catalog)) }
    }

    /// `lake ARGS`, which must succeed without printing the secret.
    fn lake(&self, args: &[&str]) -> Output {
        // The S3 secret reaches lake through `${S3_SECRET}` and must never appear in its output.
        let out = match self.s3 {
            Some((moto, _)) => {
                let secret = moto.secret_access_key.as_str();
                let out = self.p.lake_env(args, &[("S3_SECRET", secret)]);
                assert!(!out.all().contains(secret), "{}: lake printed the secret:\n{}", self.name, out.all());
                out
            }
            None => self.p.lake(args),
        };
        assert_eq!(out.code, 0, "{}: lake {args:?} failed:\n{}", self.name, out.all());
        out
    }

    /// `lake sql QUERY --format json` rows.
    fn sql_json(&self, query: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
        let out = self.lake(&["sql", query, "--format", "json"]);
        let rows: Vec<serde_json::Value> = serde_json::from_str(out.stdout.trim()).expect("sql json");
        rows.into_iter().map(|r| r.as_object().unwrap().clone()).collect()
    }

    /// `lake sql QUERY --format csv` rows (for the readers' comparison).
    fn sql_rows(&self, query: &str) -> Vec<Vec<String>> {
        let out = self.lake(&["sql", query, "--format", "csv"]);
        out.stdout.lines().skip(1).filter(|l| !l.is_empty()).map(|l| l.split(',').map(str::to_string).collect()).collect()
    }

    fn count(&self, query: &str) -> i64 {
        let rows = self.sql_json(&format!("select ({query}) as n"));
        rows[0]["n"].as_i64().unwrap_or_else(|| panic!("{}: not a count: {rows:?}", self.name))
    }

    fn show(&self, table: &str) -> serde_json::Value {
        let out = self.lake(&["show", table, "--log-format", "json"]);
        serde_json::from_str(out.stdout.trim()).expect("show json")
    }

    fn snapshot_ids(&self, table: &str) -> Vec<i64> {
        let doc = self.show(table);
        doc["snapshots"].as_array().unwrap().iter().map(|s| s["snapshot_id"].as_i64().unwrap()).collect()
    }

    /// Every table: its columns (name and type, without lake's `_`-prefixed ingest metadata,
    /// which holds paths and load times), row count, per-numeric-column sums and the md5 of
    /// all its rows in sorted order.
    fn fingerprint(&self) -> Fingerprint {
        let columns = self.sql_json(
            "select table_schema || '.' || table_name as t, column_name as c, data_type as ty \
             from information_schema.columns where table_catalog = 'lake' \
             and table_schema <> 'information_schema' order by t, ordinal_position",
        );
        let mut tables: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for row in columns {
            let (t, c, ty) = (row["t"].as_str().unwrap(), row["c"].as_str().unwrap(), row["ty"].as_str().unwrap());
            tables.entry(t.to_string()).or_default();
            if !c.starts_with('_') {
                tables.get_mut(t).unwrap().push((c.to_string(), ty.to_string()));
            }
        }
        let parts: Vec<String> = tables
            .iter()
            .map(|(table, cols)| {
                let text = |c: &str| format!("coalesce(cast(\"{c}\" as varchar), '~')");
                let row = format!("concat_ws('|', {})", cols.iter().map(|(c, _)| text(c)).collect::<Vec<_>>().join(", "));
                let mut fields = vec![
                    format!("'{}'", cols.iter().map(|(c, ty)| format!("{c} {ty}")).collect::<Vec<_>>().join("; ")),
                    "cast(count(*) as varchar)".to_string(),
                ];
                for (c, ty) in cols {
                    if ["Int", "UInt", "Float", "Decimal"].iter().any(|n| ty.starts_with(n)) {
                        let sum = format!("round(cast(sum(\"{c}\") as double), 4)");
                        fields.push(format!("'sum({c})=' || coalesce(cast({sum} as varchar), '~')"));
                    }
                }
                fields.push(format!("coalesce(md5(string_agg({row}, chr(10) order by {row})), '~')"));
                format!("select '{table}' as t, concat_ws(' / ', {}) as f from {table}", fields.join(", "))
            })
            .collect();
        self.sql_json(&parts.join(" union all "))
            .into_iter()
            .map(|r| (r["t"].as_str().unwrap().to_string(), r["f"].as_str().unwrap().to_string()))
            .collect()
    }

    /// Put a file no snapshot references under the table's `data/`; returns a check that it is
    /// still there.
    fn plant_orphan(&self, table: &str) -> Box<dyn Fn() -> bool + '_> {
        let location = self.show(table)["location"].as_str().unwrap().to_string();
        match self.s3 {
            None => {
                let path = std::path::PathBuf::from(location.strip_prefix("file://").unwrap_or(&location))
                    .join("data/00000-0-planted-orphan.parquet");
                std::fs::write(&path, b"PAR1 not really").unwrap();
                Box::new(move || path.exists())
            }
            Some((moto, bucket)) => {
                let prefix = location.strip_prefix(&format!("s3://{bucket}/")).expect("table in the bucket");
                let key = format!("{prefix}/data/00000-0-planted-orphan.parquet");
                moto.put(bucket, &key);
                let exists = move || moto.keys(bucket, &key).contains(&key);
                assert!(exists());
                Box::new(exists)
            }
        }
    }
}

/// Seeds `orders_*.csv` and `customers_*.csv`; an append model with a watermark, a merge model
/// deduplicating by version, and an aggregate over both.
fn write_project(p: &TestProject) {
    p.write(
        "seeds/seeds.yml",
        "seeds:\n  - name: orders\n    config:\n      files: \"orders_*.csv\"\n      \
         column_types: {id: bigint, customer_id: bigint, amount: double, ordered_at: timestamp}\n  \
         - name: customers\n    config:\n      files: \"customers_*.csv\"\n      \
         column_types: {customer_id: bigint, name: varchar, tier: varchar, version: bigint}\n",
    );
    p.write("models/sources.yml", "sources:\n  - name: raw\n    tables:\n      - name: orders\n      - name: customers\n");
    p.write("models/staging/stg_orders.sql", &stg_orders(""));
    p.write(
        "models/staging/dim_customers.sql",
        // The latest version per key, in SQL: `dedupe_by` applies to merges only, not to
        // `--full-refresh` (which rebuilds with the table strategy).
        "{{ config(materialized='incremental', incremental_strategy='merge', unique_key='customer_id', \
         watermark='version') }}\n\
         select customer_id, name, tier, version from (\n\
           select *, row_number() over (partition by customer_id order by version desc) as latest\n\
           from {{ source('raw', 'customers') }}\n\
           {% if is_incremental() %}where version > {{ watermark }}{% endif %}\n\
         ) where latest = 1\n",
    );
    p.write("models/marts/tier_totals.sql", &tier_totals(false));
    write_orders(p, 1, 1..=20);
    p.write(
        "seeds/customers_1.csv",
        "customer_id,name,tier,version\n1,Ada,gold,1\n2,Bo,silver,2\n3,Cy,bronze,3\n4,Di,silver,4\n5,Ed,gold,5\n",
    );
}

/// The append model; `extra` adds columns to its query (the schema change).
fn stg_orders(extra: &str) -> String {
    format!(
        "{{{{ config(materialized='incremental', incremental_strategy='append', watermark='id', \
         on_schema_change='append_new_columns', \
         maintenance={{'expire_older_than': '0s', 'retain_last': 2, 'orphan_older_than': '0s'}}) }}}}\n\
         select id, customer_id, amount, ordered_at{extra} from {{{{ source('raw', 'orders') }}}}\n\
         {{% if is_incremental() %}}where id > {{{{ watermark }}}}{{% endif %}}\n"
    )
}

/// The aggregate; until the schema change it reads a constant NULL for amount2.
fn tier_totals(with_amount2: bool) -> String {
    let amount2 = if with_amount2 { "o.amount2" } else { "cast(null as double)" };
    format!(
        "select c.tier, count(*) as orders, sum(o.amount) as revenue, count({amount2}) as with_amount2\n\
         from {{{{ ref('stg_orders') }}}} o join {{{{ ref('dim_customers') }}}} c on o.customer_id = c.customer_id\n\
         group by c.tier\n"
    )
}

fn write_orders(p: &TestProject, batch: usize, ids: std::ops::RangeInclusive<i64>) {
    let mut text = String::from("id,customer_id,amount,ordered_at\n");
    for id in ids {
        text.push_str(&format!("{id},{},{}.25,2026-01-{:02}T{:02}:00:00\n", id % 7 + 1, id * 3, 1 + id / 24, id % 24));
    }
    p.write(&format!("seeds/orders_{batch}.csv"), &text);
}

/// Run `step` on every backend, then check that every table reads the same everywhere.
fn phase(name: &str, backends: &[Backend], step: &dyn Fn(&Backend)) -> Fingerprint {
    for b in backends {
        step(b);
    }
    let reference = backends[0].fingerprint();
    assert!(!reference.is_empty());
    for b in &backends[1..] {
        assert_eq!(b.fingerprint(), reference, "after {name}: {} differs from {}", b.name, backends[0].name);
    }
    reference
}

#[test]
fn one_scenario_gives_the_same_tables_on_sqlite_postgres_s3_and_rest_s3() {
    let moto = Moto::start_with_auth();
    moto.create_bucket("lake-rest");
    let pg = PgServer::start();
    let endpoint = moto.endpoint();
    let rest = Rustberg::start_s3(&S3Warehouse {
        location: "s3://lake-rest/wh",
        endpoint: &endpoint,
        access_key_id: &moto.access_key_id,
        secret_access_key: &moto.secret_access_key,
    });
    let backends = [Backend::local(), Backend::postgres_s3(&pg, &moto), Backend::rest_s3(&rest, &moto)];
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scenario(&backends)));
    if let Err(e) = result {
        let log = rest.log();
        let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
        eprintln!("rustberg's errors:\n{}", errors.join("\n"));
        std::panic::resume_unwind(e);
    }
}

fn scenario(backends: &[Backend]) {
    let built = phase("the first build", backends, &|b| {
        b.lake(&["build"]);
        assert_eq!(b.count("select count(*) from staging.stg_orders"), 20, "{}", b.name);
    });

    phase("an incremental append", backends, &|b| {
        write_orders(&b.p, 2, 21..=30);
        b.lake(&["build"]);
        assert_eq!(b.count("select count(*) from staging.stg_orders"), 30, "{}", b.name);
        let current = b.show("staging.stg_orders");
        let id = current["current_snapshot_id"].clone();
        let snap = current["snapshots"].as_array().unwrap().iter().find(|s| s["snapshot_id"] == id).unwrap().clone();
        assert_eq!(snap["operation"], "append", "{}: {snap}", b.name);
    });

    let merged = phase("a merge", backends, &|b| {
        // Customer 3 changes twice in one batch (the later version wins); 6 and 7 are new.
        b.p.write(
            "seeds/customers_2.csv",
            "customer_id,name,tier,version\n3,Cy,silver,8\n6,Fa,bronze,6\n3,Cy,gold,9\n7,Gu,gold,7\n",
        );
        b.lake(&["build"]);
        assert_eq!(b.count("select count(*) from staging.dim_customers"), 7, "{}", b.name);
        assert_eq!(b.count("select version from staging.dim_customers where customer_id = 3 and tier = 'gold'"), 9);
    });

    let refreshed = phase("a full refresh", backends, &|b| {
        b.lake(&["run", "--full-refresh"]);
    });
    assert_eq!(refreshed, merged, "a full refresh rebuilds the same rows");

    phase("a schema change", backends, &|b| {
        b.p.write("models/staging/stg_orders.sql", &stg_orders(", amount * 2 as amount2"));
        b.p.write("models/marts/tier_totals.sql", &tier_totals(true));
        write_orders(&b.p, 3, 31..=36);
        b.lake(&["build"]);
        assert_eq!(b.count("select count(*) from staging.stg_orders"), 36, "{}", b.name);
        assert_eq!(b.count("select count(amount2) from staging.stg_orders"), 6, "{}: old rows read NULL", b.name);
    });

    let ingested = phase("an ingest from a file", backends, &|b| {
        let lines: String = (1..=25).map(|i| format!("{{\"id\": {i}, \"kind\": \"k{}\", \"value\": {i}.5}}\n", i % 4)).collect();
        b.p.write("events.ndjson", &lines);
        b.lake(&["ingest", "--from", "events.ndjson", "--table", "raw.events", "--once"]);
        assert_eq!(b.count("select count(*) from raw.events"), 25, "{}", b.name);
    });

    let maintained = phase("maintenance", backends, &|b| {
        let before = b.snapshot_ids("staging.stg_orders").len();
        let planted = b.plant_orphan("staging.stg_orders");
        b.lake(&["maintain"]);
        assert!(!planted(), "{}: the planted orphan file was not removed", b.name);
        let after = b.snapshot_ids("staging.stg_orders").len();
        assert!(after < before, "{}: no snapshot expired ({before} → {after})", b.name);
    });
    assert_eq!(maintained, ingested, "maintenance keeps every row");
    let kept: Vec<usize> = backends.iter().map(|b| b.snapshot_ids("staging.stg_orders").len()).collect();
    assert!(kept.windows(2).all(|w| w[0] == w[1]), "snapshots kept after expiry: {kept:?}");

    let rolled_back = phase("a rollback", backends, &|b| {
        let first = b.snapshot_ids("staging.dim_customers")[0];
        b.lake(&["rollback", "staging.dim_customers", "--to", &first.to_string()]);
    });
    assert_eq!(rolled_back["staging.dim_customers"], built["staging.dim_customers"], "rolled back to the first build");

    let rerun = phase("a run after the rollback", backends, &|b| {
        b.lake(&["run", "--select", "dim_customers"]);
    });
    assert_eq!(rerun, maintained, "the merge is redone from the restored watermark");

    // Other readers see the same tables on every backend.
    for b in backends {
        let tables = assert_readers_match(b.p.path(), b.reader_catalog.as_ref(), &|q| b.sql_rows(q));
        assert_eq!(tables.len(), rerun.len(), "{}: {tables:?}", b.name);
    }
}

/// The ```toml blocks of README's "### Backends" section, in order.
fn readme_backend_blocks() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme.split("### Backends").nth(1).expect("a Backends section");
    let section = section.split("\n### ").next().unwrap();
    section
        .split("```toml\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap().to_string())
        .collect()
}

/// `lake doctor` passes and a seed plus a model build on the project's `lake.toml`.
fn doctor_and_build(p: &TestProject, env: &[(&str, &str)]) {
    p.write("seeds/seeds.yml", "seeds:\n  - name: orders\n    config:\n      column_types: {id: bigint, amount: double}\n");
    p.write("seeds/orders.csv", "id,amount\n1,10\n2,32\n");
    p.write("models/sources.yml", "sources:\n  - name: raw\n    tables:\n      - name: orders\n");
    p.write("models/marts/total.sql", "select cast(sum(amount) as bigint) as total from {{ source('raw', 'orders') }}\n");
    p.lake_env(&["doctor"], env).assert_ok();
    p.lake_env(&["build"], env).assert_ok();
    let out = p.lake_env(&["sql", "select total from marts.total", "--format", "csv"], env);
    assert_eq!(out.assert_ok().stdout.trim(), "total\n42");
    for (_, v) in env {
        assert!(!out.all().contains(v), "a secret was printed");
    }
}

#[test]
fn the_readme_lake_toml_of_each_backend_works_as_written() {
    let blocks = readme_backend_blocks();
    assert_eq!(blocks.len(), 3, "SQLite, Postgres + S3, REST + S3 with OAuth2");

    // Embedded, as written.
    let p = TestProject::new();
    p.write("lake.toml", &format!("name = \"readme\"\n{}", blocks[0]));
    doctor_and_build(&p, &[]);

    // Postgres + S3: only the host names change.
    let moto = Moto::start_with_auth();
    moto.create_bucket("lakehouse");
    let pg = PgServer::start_with_password("pg-Readme-7");
    pg.psql("postgres", "CREATE ROLE lake LOGIN PASSWORD 'lake-Readme-8'");
    pg.psql("postgres", "CREATE DATABASE lake OWNER lake");
    let p = TestProject::new();
    let toml = blocks[1]
        .replace("db.internal:5432", &format!("127.0.0.1:{}", pg.port))
        .replace("http://minio.internal:9000", &moto.endpoint());
    p.write("lake.toml", &format!("name = \"readme\"\n{toml}"));
    doctor_and_build(
        &p,
        &[
            ("PGPASSWORD", "lake-Readme-8"),
            ("S3_KEY", &moto.access_key_id),
            ("S3_SECRET", &moto.secret_access_key),
        ],
    );

    // REST with OAuth2 client credentials (an expiring-token proxy in front of rustberg) + S3,
    // the S3 keys from the standard AWS variables.
    let server = Rustberg::start_s3(&S3Warehouse {
        location: "s3://lakehouse/warehouse",
        endpoint: &moto.endpoint(),
        access_key_id: &moto.access_key_id,
        secret_access_key: &moto.secret_access_key,
    });
    let proxy = RestProxy::start(
        server.port,
        ProxyOptions {
            token_lifetime: 300,
            client_secret: "oauth-Readme-9".into(),
            ..Default::default()
        },
    );
    let p = TestProject::new();
    let toml = blocks[2]
        .replace("https://catalog.internal", &proxy.uri())
        .replace("https://auth.internal/oauth/token", &format!("{}/v1/oauth/tokens", proxy.uri()))
        .replace("http://minio.internal:9000", &moto.endpoint());
    p.write("lake.toml", &format!("name = \"readme\"\n{toml}"));
    doctor_and_build(
        &p,
        &[
            ("CATALOG_CLIENT_ID", "lake"),
            ("CATALOG_CLIENT_SECRET", "oauth-Readme-9"),
            ("AWS_ACCESS_KEY_ID", &moto.access_key_id),
            ("AWS_SECRET_ACCESS_KEY", &moto.secret_access_key),
        ],
    );
    assert!(!proxy.events("token").is_empty());
    assert!(proxy.events("rejected").is_empty(), "{:?}", proxy.events("rejected"));
}
