//! Table maintenance through the real binary: compaction, snapshot expiry, orphan removal,
//! rollback, `lake snapshots`; and the maintenance policy's layering.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use lake::lakehouse::catalog::{Lakehouse, table_ident};
use lake::lakehouse::commit::{self, Change, MetadataChanges};
use lake::lakehouse::maintenance::{
    MaintenancePolicy, RawPolicy, compact, expire_snapshots, parse_duration,
};
use lake::lakehouse::summary;
use lake::lakehouse::writer::WriteOptions;
use serde_json::Value;

use crate::support::TestProject;

const TABLE: &str = "staging.stg_events";

/// Seeds `events*.ndjson` into raw.events; `stg_events` appends new rows by watermark `at`.
fn project(maintenance: Option<&str>) -> TestProject {
    let p = TestProject::new();
    p.write(
        "seeds/seeds.yml",
        r#"seeds:
  - name: events
    config:
      files: "events*.ndjson"
      column_types: {id: bigint, kind: varchar, amount: "decimal(10,2)", at: timestamptz}
"#,
    );
    p.write(
        "models/sources.yml",
        "sources:\n  - name: raw\n    tables:\n      - name: events\n",
    );
    let extra = maintenance
        .map(|m| format!(", maintenance={m}"))
        .unwrap_or_default();
    p.write(
        "models/staging/stg_events.sql",
        &format!(
            r#"{{{{ config(materialized='incremental', incremental_strategy='append', watermark='at'{extra}) }}}}
select id, kind, amount, at from {{{{ source('raw', 'events') }}}}
{{% if is_incremental() %}}where at > {{{{ watermark }}}}{{% endif %}}
"#
        ),
    );
    p.write(
        "models/marts/kinds.sql",
        "select kind, count(*) as n, sum(amount) as total from {{ ref('stg_events') }} group by kind\n",
    );
    p
}

/// Add a seed file with `n` events starting at id `first` on day `day` of January, then seed and run.
fn load_batch(p: &TestProject, batch: usize, first: i64, n: i64) {
    let mut text = String::new();
    for id in first..first + n {
        text.push_str(&format!(
            "{{\"id\": {id}, \"kind\": \"{}\", \"amount\": {}.25, \"at\": \"2026-01-{:02}T{:02}:00:00Z\"}}\n",
            ["a", "b", "c"][(id % 3) as usize],
            id,
            batch + 1,
            id % 24
        ));
    }
    p.write(&format!("seeds/events_{batch}.ndjson"), &text);
    p.lake(&["seed"]).assert_ok();
    p.lake(&["run"]).assert_ok();
}

fn current(doc: &Value) -> Value {
    doc["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["snapshot_id"] == doc["current_snapshot_id"])
        .cloned()
        .expect("current snapshot")
}

fn snapshot_ids(doc: &Value) -> Vec<i64> {
    doc["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["snapshot_id"].as_i64().unwrap())
        .collect()
}

fn watermark(p: &TestProject) -> String {
    let out = p.lake(&[
        "watermarks",
        "--select",
        "stg_events",
        "--log-format",
        "json",
    ]);
    out.assert_ok();
    let row: Value =
        serde_json::from_str(out.stdout.lines().next().expect("a watermark row")).unwrap();
    row["watermark"].as_str().expect("a watermark").to_string()
}

/// count, sum(amount), count(distinct id) of the table.
fn fingerprint(p: &TestProject) -> Vec<Vec<String>> {
    p.sql_rows(&format!(
        "select count(*), cast(sum(amount) as varchar), count(distinct id), cast(max(at) as varchar) from {TABLE}"
    ))
}

fn table_dir(doc: &Value) -> PathBuf {
    let location = doc["location"].as_str().unwrap();
    PathBuf::from(location.strip_prefix("file://").expect("a local warehouse"))
}

fn files_in(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries {
        let path = e.unwrap().path();
        if path.is_dir() {
            out.extend(files_in(&path, ext));
        } else if path.extension().and_then(|e| e.to_str()) == Some(ext) {
            out.push(path);
        }
    }
    out
}

fn maintain_events(p: &TestProject, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["maintain", "--select", "stg_events", "--log-format", "json"];
    all.extend_from_slice(args);
    let out = p.lake(&all);
    out.assert_ok();
    out.stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn compaction_rewrites_small_files_as_one_replace_snapshot_with_the_same_rows() {
    let p = project(None);
    for batch in 0..4 {
        load_batch(&p, batch, batch as i64 * 10, 5);
    }
    let before = p.show(TABLE);
    assert_eq!(current(&before)["summary"]["total-data-files"], "4");
    let rows = fingerprint(&p);
    assert_eq!(rows[0][0], "20");
    let wm = watermark(&p);
    let snapshots_before = snapshot_ids(&before).len();

    // A dry run changes nothing.
    let events = maintain_events(&p, &["--dry-run"]);
    assert_eq!(events[0]["status"], "success", "{events:?}");
    assert_eq!(events[0]["compaction"]["rewritten"], 4, "{events:?}");
    assert_eq!(snapshot_ids(&p.show(TABLE)).len(), snapshots_before);

    let events = maintain_events(&p, &[]);
    let e = &events[0];
    assert_eq!(e["status"], "success", "{events:?}");
    assert_eq!(e["relation"], TABLE);
    assert_eq!(e["compaction"]["files_before"], 4);
    assert_eq!(e["compaction"]["files_after"], 1);
    assert_eq!(e["compaction"]["rewritten"], 4);
    assert_eq!(e["compaction"]["manifests_before"], 4);
    assert_eq!(e["compaction"]["manifests_after"], 1);
    // Defaults: nothing is old enough to expire or remove.
    assert_eq!(e["expiry"]["expired"].as_array().unwrap().len(), 0);
    assert_eq!(e["orphans"].as_array().unwrap().len(), 0);

    let after = p.show(TABLE);
    assert_eq!(
        snapshot_ids(&after).len(),
        snapshots_before + 1,
        "exactly one new snapshot"
    );
    let c = current(&after);
    assert_eq!(c["operation"], "replace");
    assert_eq!(c["snapshot_id"], e["compaction"]["snapshot_id"]);
    assert_eq!(c["summary"]["total-data-files"], "1");
    assert_eq!(c["summary"]["total-records"], "20");
    assert_eq!(c["summary"]["deleted-data-files"], "4");
    assert_eq!(c["summary"]["added-data-files"], "1");
    assert_eq!(c["summary"]["lake.maintenance"], "compact");
    assert_eq!(fingerprint(&p), rows, "same rows after compaction");
    assert_eq!(watermark(&p), wm, "watermark unchanged");
    // The old state is still there for time travel.
    let old = current(&before)["snapshot_id"].as_i64().unwrap();
    assert_eq!(
        p.sql_count(&format!("select count(*) from snapshot('{TABLE}', {old})")),
        20
    );

    // Nothing left to do: no new snapshot.
    let events = maintain_events(&p, &[]);
    assert!(
        events[0]["compaction"]["snapshot_id"].is_null(),
        "{events:?}"
    );
    assert_eq!(snapshot_ids(&p.show(TABLE)).len(), snapshots_before + 1);

    // Other engines read the compacted table alike.
    crate::support::readers::assert_readers_match_lake(&p);

    // Runs go on from the compacted table.
    load_batch(&p, 4, 100, 3);
    assert_eq!(p.sql_count(&format!("select count(*) from {TABLE}")), 23);
    assert_eq!(current(&p.show(TABLE))["operation"], "append");
    assert_eq!(p.sql_count("select sum(n) from marts.kinds"), 23);
}

#[test]
fn expiry_removes_old_snapshots_and_the_files_only_they_used() {
    let p = project(Some("{'expire_older_than': '0s', 'retain_last': 1}"));
    for batch in 0..3 {
        load_batch(&p, batch, batch as i64 * 10, 4);
    }
    let before = p.show(TABLE);
    let old_ids = snapshot_ids(&before);
    assert_eq!(old_ids.len(), 3);
    let dir = table_dir(&before);
    assert_eq!(files_in(&dir.join("data"), "parquet").len(), 3);
    let rows = fingerprint(&p);
    let wm = watermark(&p);

    let events = maintain_events(&p, &[]);
    let e = &events[0];
    assert_eq!(e["status"], "success", "{events:?}");
    assert_eq!(e["policy"]["expire_older_than"], "0s");
    assert_eq!(e["policy"]["retain_last"], 1);
    let compacted = e["compaction"]["snapshot_id"].as_i64().expect("compacted");
    let mut expired: Vec<i64> = e["expiry"]["expired"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    expired.sort();
    let mut expected = old_ids.clone();
    expected.sort();
    assert_eq!(
        expired, expected,
        "every snapshot but the compacted current one expires"
    );
    assert_eq!(e["expiry"]["kept"], serde_json::json!([compacted]));

    let after = p.show(TABLE);
    assert_eq!(snapshot_ids(&after), vec![compacted]);
    assert_eq!(fingerprint(&p), rows, "current data intact");
    assert_eq!(watermark(&p), wm, "the watermark is still found");
    // Time travel to an expired snapshot fails.
    let out = p.lake(&[
        "sql",
        &format!("select count(*) from snapshot('{TABLE}', {})", old_ids[0]),
        "--format",
        "csv",
    ]);
    assert_ne!(out.code, 0, "{}", out.all());
    // The small files and the expired snapshots' manifest lists are gone.
    assert_eq!(files_in(&dir.join("data"), "parquet").len(), 1);
    let metadata: Vec<String> = files_in(&dir.join("metadata"), "avro")
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    for id in &old_ids {
        assert!(
            !metadata
                .iter()
                .any(|f| f.starts_with(&format!("snap-{id}-"))),
            "{metadata:?}"
        );
    }
    assert!(
        e["expiry"]["deleted_files"].as_array().unwrap().len() >= 6,
        "{e}"
    );

    crate::support::readers::assert_readers_match_lake(&p);

    // The next run appends from the kept watermark.
    load_batch(&p, 3, 50, 2);
    assert_eq!(p.sql_count(&format!("select count(*) from {TABLE}")), 14);
    assert_eq!(
        p.sql_count(&format!("select count(distinct id) from {TABLE}")),
        14
    );
}

#[test]
fn expiry_keeps_retain_last_and_drops_rolled_back_snapshots() {
    // With tiny "small" files nothing is compacted (and 4 manifests need no merge): expiry keeps
    // exactly the newest `retain_last` snapshots of the history.
    let p = project(Some(
        "{'expire_older_than': '0s', 'retain_last': 2, 'small_file_mb': 0.000001}",
    ));
    for batch in 0..4 {
        load_batch(&p, batch, batch as i64 * 10, 2);
    }
    let ids = snapshot_ids(&p.show(TABLE));
    let events = maintain_events(&p, &[]);
    let e = &events[0];
    assert!(e["compaction"]["snapshot_id"].is_null(), "{e}");
    assert_eq!(e["expiry"]["expired"].as_array().unwrap().len(), 2, "{e}");
    let left = snapshot_ids(&p.show(TABLE));
    assert_eq!(left, ids[2..].to_vec());
    // Data files of expired snapshots are still live in the current one: kept.
    assert_eq!(p.sql_count(&format!("select count(*) from {TABLE}")), 8);
    assert_eq!(
        files_in(&table_dir(&p.show(TABLE)).join("data"), "parquet").len(),
        4
    );

    // Roll back to the oldest kept snapshot: the rolled-back one leaves the history and
    // expires with its data file; the history of the rollback stays.
    p.lake(&["rollback", TABLE, "--to", &left[0].to_string()])
        .assert_ok();
    let wm = watermark(&p);
    let events = maintain_events(&p, &[]);
    assert_eq!(events[0]["status"], "success", "{events:?}");
    assert_eq!(
        events[0]["expiry"]["expired"],
        serde_json::json!([left[1]]),
        "{events:?}"
    );
    let now = snapshot_ids(&p.show(TABLE));
    assert_eq!(now.len(), 2);
    assert_eq!(now[0], left[0]);
    assert_eq!(watermark(&p), wm);
    assert_eq!(p.sql_count(&format!("select count(*) from {TABLE}")), 6);
    assert_eq!(
        files_in(&table_dir(&p.show(TABLE)).join("data"), "parquet").len(),
        3
    );
}

fn policy(json: Value) -> MaintenancePolicy {
    MaintenancePolicy::resolve(Some(&json), None).unwrap()
}

#[test]
fn expiry_keeps_the_history_watermark_and_seed_lookups_need() {
    let p = project(None);
    for batch in 0..3 {
        load_batch(&p, batch, batch as i64 * 10, 2);
    }
    let config = lake::project::config::ProjectConfig::load(p.path(), &Default::default()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let lh = Lakehouse::connect(&config.catalog).await.unwrap();
        let keep_one = policy(serde_json::json!({"expire_older_than": "0s", "retain_last": 1}));

        // A snapshot without lake keys on top (as another tool's commit would make): the
        // snapshot holding the watermark must stay, and the chain to it.
        let ident = table_ident(TABLE).unwrap();
        let t = lh.table(&ident).await.unwrap();
        let wm_snapshot = t.metadata().current_snapshot_id().unwrap();
        let wm = summary::watermark(&t).unwrap();
        commit::commit(
            &lh,
            t,
            &MetadataChanges::default(),
            Change::Append(vec![]),
            HashMap::new(),
            None,
        )
        .await
        .unwrap();
        let t = lh.table(&ident).await.unwrap();
        let top = t.metadata().current_snapshot_id().unwrap();
        let out = expire_snapshots(&lh, &t, &keep_one, chrono::Utc::now())
            .await
            .unwrap();
        assert_eq!(out.expired.len(), 2, "{out:?}");
        let mut kept = out.kept.clone();
        kept.sort();
        let mut expected = vec![wm_snapshot, top];
        expected.sort();
        assert_eq!(kept, expected);
        let t = lh.table(&ident).await.unwrap();
        assert_eq!(summary::watermark(&t), Some(wm));

        // The seed table: each snapshot's seed files still count, so nothing expires ...
        let raw = table_ident("raw.events").unwrap();
        let t = lh.table(&raw).await.unwrap();
        let seeds = summary::loaded_seed_files(&t);
        assert_eq!(seeds.len(), 3, "{seeds:?}");
        let out = expire_snapshots(&lh, &t, &keep_one, chrono::Utc::now())
            .await
            .unwrap();
        assert!(out.expired.is_empty(), "{out:?}");
        // ... until a compaction snapshot carries their union.
        let c = compact(
            &lh,
            &t,
            &MaintenancePolicy::default(),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
        let compacted = c.snapshot_id.expect("compacted");
        assert_eq!((c.files_before, c.files_after), (3, 1));
        let t = lh.table(&raw).await.unwrap();
        assert_eq!(summary::loaded_seed_files(&t), seeds);
        let out = expire_snapshots(&lh, &t, &keep_one, chrono::Utc::now())
            .await
            .unwrap();
        assert_eq!(out.kept, vec![compacted]);
        assert_eq!(out.expired.len(), 3);
        let t = lh.table(&raw).await.unwrap();
        assert_eq!(summary::loaded_seed_files(&t), seeds);
    });
    // Seeds are not loaded again; the model finds nothing new.
    p.lake(&["seed"]).assert_ok();
    assert_eq!(p.sql_count("select count(*) from raw.events"), 6);
    p.lake(&["run"]).assert_ok();
    assert_eq!(p.sql_count(&format!("select count(*) from {TABLE}")), 6);
}

#[test]
fn orphan_removal_deletes_old_unreferenced_files_only() {
    let p = project(None);
    load_batch(&p, 0, 0, 5);
    load_batch(&p, 1, 10, 5);
    let doc = p.show(TABLE);
    let dir = table_dir(&doc);
    let rows = fingerprint(&p);
    let ten_days_ago = SystemTime::now() - Duration::from_secs(10 * 86_400);
    let age = |path: &Path| {
        let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        f.set_modified(ten_days_ago).unwrap();
    };
    // Every real file looks old: referenced files must stay anyway.
    for f in files_in(&dir.join("data"), "parquet")
        .into_iter()
        .chain(files_in(&dir.join("metadata"), "avro"))
        .chain(files_in(&dir.join("metadata"), "json"))
    {
        age(&f);
    }
    let stray_old = dir.join("data/00000-0-stray-old.parquet");
    let stray_new = dir.join("data/00000-0-stray-new.parquet");
    let stray_meta = dir.join("metadata/stray-old-m0.avro");
    for f in [&stray_old, &stray_new, &stray_meta] {
        std::fs::write(f, b"PAR1 not really").unwrap();
    }
    age(&stray_old);
    age(&stray_meta);

    // Dry run: reported, not removed.
    let events = maintain_events(&p, &["--dry-run"]);
    assert_eq!(
        events[0]["orphans"].as_array().unwrap().len(),
        2,
        "{events:?}"
    );
    assert!(stray_old.exists());

    let events = maintain_events(&p, &[]);
    let orphans: Vec<String> = events[0]["orphans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(orphans.len(), 2, "{orphans:?}");
    assert!(orphans.iter().any(|o| o.ends_with("stray-old.parquet")));
    assert!(orphans.iter().any(|o| o.ends_with("stray-old-m0.avro")));
    assert!(!stray_old.exists());
    assert!(!stray_meta.exists());
    assert!(
        stray_new.exists(),
        "a fresh file is inside the safety margin"
    );
    assert_eq!(fingerprint(&p), rows);
    // Time travel to the first snapshot still works: its files are referenced.
    let first = snapshot_ids(&doc)[0];
    assert_eq!(
        p.sql_count(&format!(
            "select count(*) from snapshot('{TABLE}', {first})"
        )),
        5
    );
}

#[test]
fn rollback_restores_rows_and_watermark_and_the_next_run_converges() {
    let p = project(None);
    load_batch(&p, 0, 0, 3);
    let good = p.show(TABLE);
    let good_id = good["current_snapshot_id"].as_i64().unwrap();
    let good_rows = fingerprint(&p);
    let good_wm = watermark(&p);

    // A bad append.
    load_batch(&p, 1, 10, 2);
    assert_eq!(p.sql_count(&format!("select count(*) from {TABLE}")), 5);
    let bad_id = p.show(TABLE)["current_snapshot_id"].as_i64().unwrap();
    let bad_rows = fingerprint(&p);
    assert_ne!(watermark(&p), good_wm);

    // Unknown snapshot: a usage error listing the known ones.
    let out = p.lake(&["rollback", TABLE, "--to", "12345"]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.all().contains("known snapshots"), "{}", out.all());
    assert!(out.all().contains(&good_id.to_string()), "{}", out.all());

    let out = p.lake(&[
        "rollback",
        TABLE,
        "--to",
        &good_id.to_string(),
        "--log-format",
        "json",
    ]);
    out.assert_ok();
    let r: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(r["to_snapshot"], good_id);
    assert_eq!(r["previous_snapshot"], bad_id);
    assert_eq!(r["files_removed"], 1);
    assert_eq!(r["rows_removed"], 2);

    let doc = p.show(TABLE);
    let c = current(&doc);
    assert_eq!(snapshot_ids(&doc).len(), 3, "a new snapshot");
    assert_eq!(c["operation"], "overwrite");
    assert_eq!(c["parent_id"], good_id);
    assert_eq!(c["summary"]["lake.rollback-of"], good_id.to_string());
    assert_eq!(c["summary"]["lake.rolled-back"], bad_id.to_string());
    assert_eq!(c["summary"]["total-records"], "3");
    assert_eq!(c["summary"]["lake.model"], "stg_events");
    assert_eq!(fingerprint(&p), good_rows);
    assert_eq!(watermark(&p), good_wm);

    crate::support::readers::assert_readers_match_lake(&p);

    // `lake snapshots`: the rolled-back snapshot left the history.
    let out = p.lake(&["snapshots", TABLE, "--log-format", "json"]);
    out.assert_ok();
    let snaps: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(snaps.len(), 3);
    let by_id = |id: i64| {
        snaps
            .iter()
            .find(|s| s["snapshot_id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(by_id(bad_id)["in_history"], false);
    assert_eq!(by_id(good_id)["in_history"], true);
    let last = snaps.last().unwrap();
    assert_eq!(last["current"], true);
    assert_eq!(last["maintenance"], "rollback");
    assert_eq!(last["rollback_of"], good_id);
    assert_eq!(last["watermark"], good_wm.as_str());
    let text = p.lake(&["snapshots", TABLE]);
    text.assert_ok();
    assert!(text.stdout.contains("rollback to"), "{}", text.stdout);

    // The next run appends the rows after the old watermark again.
    p.lake(&["run"]).assert_ok();
    assert_eq!(fingerprint(&p), bad_rows);
    assert_eq!(current(&p.show(TABLE))["operation"], "append");
    assert_eq!(p.sql_count("select sum(n) from marts.kinds"), 5);
}

#[test]
fn maintenance_policy_layers_and_validation() {
    let d = MaintenancePolicy::default();
    assert_eq!(d.target_file_size_mb, 128);
    assert_eq!(d.min_input_files, 2);
    assert_eq!(d.small_file_mb, 96.0);
    assert_eq!(d.retain_last, 5);
    assert_eq!(d.expire_older_than, parse_duration("7d").unwrap());
    assert_eq!(d.orphan_older_than, parse_duration("3d").unwrap());

    let model = serde_json::json!({"target_file_size_mb": 64, "expire_older_than": "12h"});
    let p = MaintenancePolicy::resolve(Some(&model), None).unwrap();
    assert_eq!(
        p.small_file_mb, 48.0,
        "small files default to 75% of the target"
    );
    assert_eq!(p.expire_older_than, Duration::from_secs(12 * 3600));

    // Model config over table properties over defaults.
    let props: HashMap<String, String> = [
        ("lake.maintenance.retain_last", "9"),
        ("lake.maintenance.expire_older_than", "2d"),
        ("lake.maintenance.orphan_older_than", "30m"),
        ("write.format.default", "parquet"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let raw = RawPolicy::from_json(&model)
        .unwrap()
        .or(RawPolicy::from_properties(&props).unwrap());
    let p = MaintenancePolicy::try_from(raw).unwrap();
    assert_eq!(p.retain_last, 9);
    assert_eq!(p.expire_older_than, Duration::from_secs(12 * 3600));
    assert_eq!(p.orphan_older_than, Duration::from_secs(30 * 60));
    assert_eq!(p.target_file_size_mb, 64);

    // Serde straight from the config mapping.
    let p: MaintenancePolicy =
        serde_json::from_value(serde_json::json!({"retain_last": 2})).unwrap();
    assert_eq!(p.retain_last, 2);

    for bad in [
        serde_json::json!({"retain_last": 0}),
        serde_json::json!({"min_input_files": 1}),
        serde_json::json!({"expire_older_than": "7 weeks"}),
        serde_json::json!({"bogus": 1}),
    ] {
        assert!(
            MaintenancePolicy::resolve(Some(&bad), None).is_err(),
            "{bad}"
        );
    }
    assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
    assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
    assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));

    // Through the binary: a bad policy fails that table, exit 1.
    let p = project(Some("{'bogus': 1}"));
    load_batch(&p, 0, 0, 2);
    let out = p.lake(&["maintain"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.all().contains("bogus"), "{}", out.all());
}

#[test]
fn compaction_groups_files_by_partition() {
    let p = project(None);
    p.write(
        "models/staging/by_kind.sql",
        r#"{{ config(materialized='incremental', incremental_strategy='append', watermark='at', partition_by=['kind']) }}
select id, kind, amount, at from {{ source('raw', 'events') }}
{% if is_incremental() %}where at > {{ watermark }}{% endif %}
"#,
    );
    for batch in 0..3 {
        load_batch(&p, batch, batch as i64 * 10, 6);
    }
    let t = "staging.by_kind";
    assert_eq!(
        current(&p.show(t))["summary"]["total-data-files"],
        "9",
        "3 appends x 3 kinds"
    );
    let per_kind = p.sql_rows(&format!(
        "select kind, count(*), cast(sum(amount) as varchar) from {t} group by kind order by kind"
    ));

    let out = p.lake(&["maintain", "--select", "by_kind", "--log-format", "json"]);
    out.assert_ok();
    let e: Value = serde_json::from_str(out.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(e["compaction"]["rewritten"], 9, "{e}");
    assert_eq!(
        e["compaction"]["files_after"], 3,
        "one file per partition: {e}"
    );
    let c = current(&p.show(t));
    assert_eq!(c["operation"], "replace");
    assert_eq!(c["summary"]["total-data-files"], "3");
    assert_eq!(
        p.sql_rows(&format!("select kind, count(*), cast(sum(amount) as varchar) from {t} group by kind order by kind")),
        per_kind
    );
    assert_eq!(
        p.sql_count(&format!("select count(*) from {t} where kind = 'b'")),
        6
    );
    crate::support::readers::assert_readers_match_lake(&p);
}

#[test]
fn many_manifests_are_merged_even_without_small_files() {
    // No file counts as small; more than 2 manifests triggers a manifest-only rewrite.
    let p = project(Some("{'small_file_mb': 0.000001, 'max_manifests': 2}"));
    for batch in 0..3 {
        load_batch(&p, batch, batch as i64 * 10, 2);
    }
    let rows = fingerprint(&p);
    let events = maintain_events(&p, &[]);
    let e = &events[0];
    assert_eq!(e["compaction"]["rewritten"], 0, "{e}");
    assert_eq!(e["compaction"]["manifests_before"], 3, "{e}");
    assert_eq!(e["compaction"]["manifests_after"], 1, "{e}");
    let c = current(&p.show(TABLE));
    assert_eq!(c["operation"], "replace");
    assert_eq!(c["summary"]["total-data-files"], "3");
    assert_eq!(c["summary"]["total-records"], "6");
    assert!(c["summary"].get("added-data-files").is_none(), "{c}");
    assert_eq!(fingerprint(&p), rows);
    crate::support::readers::assert_readers_match_lake(&p);
    // Once merged, nothing to do.
    let events = maintain_events(&p, &[]);
    assert!(
        events[0]["compaction"]["snapshot_id"].is_null(),
        "{events:?}"
    );
    // Appends go on; the merged manifest stays.
    load_batch(&p, 3, 50, 2);
    assert_eq!(p.sql_count(&format!("select count(*) from {TABLE}")), 8);
}

#[test]
fn expiry_keeps_the_snapshots_exact_incremental_reads_start_from() {
    let p = exact_read_project();
    let read_from = p.show(TABLE)["current_snapshot_id"].as_i64().unwrap();
    // Two more appends that `copy` has not read yet.
    append_two_batches(&p, &["run", "--select", "stg_events"]);
    let events = maintain_events(&p, &[]);
    assert_eq!(events[0]["status"], "success", "{events:?}");
    let kept: Vec<i64> = events[0]["expiry"]["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(
        kept.len(),
        3,
        "the history back to {read_from} stays: {events:?}"
    );
    assert!(kept.contains(&read_from));

    // `copy` reads exactly the two appended files.
    let r = run_copy(&p);
    assert_eq!(r["rows_written"], 2, "{r}");
    assert!(r["message"].is_null(), "no full refresh: {r}");
    assert_eq!(p.sql_count("select count(*) from marts.copy"), 5);
}

#[test]
fn run_maintain_keeps_the_snapshots_exact_incremental_reads_start_from() {
    // `lake run --maintain` once expired with no protected set, so a downstream exact read
    // (`watermark: snapshot`) lost its starting snapshot and fell back to a full refresh.
    let p = exact_read_project();
    append_two_batches(&p, &["run", "--select", "stg_events", "--maintain"]);
    let r = run_copy(&p);
    assert!(r["message"].is_null(), "no full refresh after run --maintain: {r}");
    assert_eq!(r["rows_written"], 2, "{r}");
    assert_eq!(p.sql_count("select count(*) from marts.copy"), 5);
}

/// Two more appends (`events_1`, `events_2`) to the seed, each followed by `run`.
fn append_two_batches(p: &TestProject, run: &[&str]) {
    for batch in 1..3 {
        p.write(
            &format!("seeds/events_{batch}.ndjson"),
            &format!("{{\"id\": {}, \"kind\": \"a\", \"amount\": 1.5, \"at\": \"2026-01-0{}T10:00:00Z\"}}\n", 10 + batch, batch + 1),
        );
        p.lake(&["seed"]).assert_ok();
        p.lake(run).assert_ok();
    }
}

/// Run the `copy` model (exact incremental reads of `stg_events`); its run result.
fn run_copy(p: &TestProject) -> serde_json::Value {
    p.lake(&["run", "--select", "copy"]).assert_ok();
    let results = p.run_results();
    results["results"].as_array().unwrap().iter().find(|r| r["name"] == "copy").unwrap().clone()
}

/// A table that keeps one snapshot (`retain_last: 1`, expire at once) and a model `copy` that
/// reads it exactly (`watermark: snapshot`); the first batch loaded and built.
fn exact_read_project() -> TestProject {
    let p = project(Some(
        "{'expire_older_than': '0s', 'retain_last': 1, 'small_file_mb': 0.000001}",
    ));
    p.write(
        "models/marts/copy.sql",
        "{{ config(materialized='incremental', incremental_strategy='append', watermark='snapshot') }}\nselect id, amount from {{ ref('stg_events') }}\n",
    );
    load_batch(&p, 0, 0, 3);
    p
}
