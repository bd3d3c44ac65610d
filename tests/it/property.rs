//! Property test: random sequences of raw appends (late rows, updates to existing keys, a new
//! column) and incremental runs, for every strategy (merge in both modes); after each run the incremental table must
//! equal a full rebuild of the same model over the same data.
//!
//! Seeded and deterministic: set `LAKE_PROPTEST_SEED` to replay, `LAKE_PROPTEST_CASES` to
//! change the number of cases (200 by default, split over four tests that run in parallel).

use crate::support::TestProject;

/// xorshift64*: small, deterministic, good enough to draw test cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const MODELS: &[(&str, &str, &str)] = &[
    (
        "inc_append",
        "{{ config(materialized='incremental', incremental_strategy='append', watermark='seq', on_schema_change='append_new_columns') }}\nselect * from {{ source('raw', 'events') }}\n{% if is_incremental() %}where seq > {{ watermark }}{% endif %}\n",
        "select * from {{ source('raw', 'events') }}\n",
    ),
    (
        "inc_merge",
        "{{ config(materialized='incremental', incremental_strategy='merge', unique_key='id', watermark='seq', on_schema_change='append_new_columns') }}\nselect * from (select *, row_number() over (partition by id order by seq desc) as rn from {{ source('raw', 'events') }}\n{% if is_incremental() %}where seq > {{ watermark }}{% endif %}\n) as latest where rn = 1\n",
        "select * from (select *, row_number() over (partition by id order by seq desc) as rn from {{ source('raw', 'events') }}) as latest where rn = 1\n",
    ),
    (
        "inc_merge_mor",
        "{{ config(materialized='incremental', incremental_strategy='merge', merge_mode='merge-on-read', unique_key='id', watermark='seq', on_schema_change='append_new_columns') }}\nselect * from (select *, row_number() over (partition by id order by seq desc) as rn from {{ source('raw', 'events') }}\n{% if is_incremental() %}where seq > {{ watermark }}{% endif %}\n) as latest where rn = 1\n",
        "select * from (select *, row_number() over (partition by id order by seq desc) as rn from {{ source('raw', 'events') }}) as latest where rn = 1\n",
    ),
    (
        "inc_range",
        "{{ config(materialized='incremental', incremental_strategy='replace_range', range_by='day', watermark='max_seq') }}\nselect day, count(*) as n, sum(v) as total, max(seq) as max_seq from {{ source('raw', 'events') }}\n{% if is_incremental() %}where day >= (select min(day) from {{ source('raw', 'events') }} where seq > {{ watermark }}){% endif %}\ngroup by day\n",
        "select day, count(*) as n, sum(v) as total, max(seq) as max_seq from {{ source('raw', 'events') }} group by day\n",
    ),
    (
        "inc_snapshot",
        "{{ config(materialized='incremental', incremental_strategy='append', watermark='snapshot', on_schema_change='append_new_columns') }}\nselect * from {{ source('raw', 'events') }}\n",
        "select * from {{ source('raw', 'events') }}\n",
    ),
];

fn seeds_yml(with_note: bool) -> String {
    let note = if with_note { ", note: varchar" } else { "" };
    format!(
        "seeds:\n  - name: events\n    config:\n      files: \"events_*.ndjson\"\n      column_types: {{id: bigint, v: bigint, seq: bigint, day: bigint{note}}}\n"
    )
}

fn setup() -> TestProject {
    let p = TestProject::new();
    p.write("seeds/seeds.yml", &seeds_yml(false));
    p.write("models/sources.yml", "sources:\n  - name: raw\n    tables:\n      - name: events\n");
    for (name, incremental, full) in MODELS {
        p.write(&format!("models/staging/{name}.sql"), incremental);
        p.write(&format!("models/marts/full_{name}.sql"), &format!("{{{{ config(materialized='table') }}}}\n{full}"));
    }
    p
}

/// Every incremental model against its full rebuild, in two `lake sql` calls.
fn assert_all_equal(p: &TestProject, context: &str) {
    let mut columns: std::collections::BTreeMap<(String, String), Vec<String>> = Default::default();
    for row in p.sql_rows(
        "select table_schema, table_name, column_name from information_schema.columns \
         where table_schema in ('staging', 'marts') order by 1, 2, 3",
    ) {
        columns.entry((row[0].clone(), row[1].clone())).or_default().push(row[2].clone());
    }
    let mut diffs = Vec::new();
    for (name, _, _) in MODELS {
        let inc = &columns[&("staging".to_string(), name.to_string())];
        let full = &columns[&("marts".to_string(), format!("full_{name}"))];
        assert_eq!(inc, full, "{context}: columns of {name}");
        let cols = inc.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(", ");
        let (a, b) = (format!("staging.{name}"), format!("marts.full_{name}"));
        diffs.push(format!(
            "select '{name}' as model, \
             (select count(*) from (select {cols} from {a} except all select {cols} from {b}) as x) as only_incremental, \
             (select count(*) from (select {cols} from {b} except all select {cols} from {a}) as y) as only_full"
        ));
    }
    for row in p.sql_rows(&diffs.join(" union all ")) {
        assert!(
            row[1] == "0" && row[2] == "0",
            "{context}: {} differs from its full rebuild ({} rows only incremental, {} only full)",
            row[0],
            row[1],
            row[2]
        );
    }
}

fn run_case(seed: u64) {
    let mut rng = Rng(seed.wrapping_mul(0x9E3779B97F4A7C15) | 1);
    let p = setup();
    let mut seq = 0u64;
    let mut next_id = 0u64;
    let mut with_note = false;
    let steps = 2 + rng.below(3);
    for step in 0..steps {
        if !with_note && step > 0 && rng.below(3) == 0 {
            with_note = true;
            p.write("seeds/seeds.yml", &seeds_yml(true));
        }
        let mut lines = String::new();
        for _ in 0..(1 + rng.below(12)) {
            seq += 1;
            // Updates to existing keys, new keys, and days that arrive late.
            let id = if next_id > 0 && rng.below(3) == 0 { rng.below(next_id) } else { next_id += 1; next_id - 1 };
            let day = if rng.below(4) == 0 { rng.below(step + 1) } else { step + rng.below(2) };
            let v = rng.below(100) as i64 - 20;
            let note = if with_note && rng.below(2) == 0 { format!(", \"note\": \"n{seq}\"") } else { String::new() };
            lines.push_str(&format!("{{\"id\": {id}, \"v\": {v}, \"seq\": {seq}, \"day\": {day}{note}}}\n"));
        }
        p.write(&format!("seeds/events_{step:03}.ndjson"), &lines);
        let context = format!("seed {seed}, step {step}");
        let out = p.lake(&["seed"]);
        assert_eq!(out.code, 0, "{context}: {}", out.all());
        let out = p.lake(&["run"]);
        assert_eq!(out.code, 0, "{context}: {}", out.all());
        assert_all_equal(&p, &context);
    }
}

fn run_cases(part: u64) {
    let total: u64 = std::env::var("LAKE_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let base: u64 = std::env::var("LAKE_PROPTEST_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(20261122);
    let per_part = total.div_ceil(4);
    for i in 0..per_part {
        let case = part * per_part + i;
        if case < total {
            run_case(base + case);
        }
    }
}

#[test]
fn incremental_equals_full_refresh_part_1() {
    run_cases(0);
}

#[test]
fn incremental_equals_full_refresh_part_2() {
    run_cases(1);
}

#[test]
fn incremental_equals_full_refresh_part_3() {
    run_cases(2);
}

#[test]
fn incremental_equals_full_refresh_part_4() {
    run_cases(3);
}
