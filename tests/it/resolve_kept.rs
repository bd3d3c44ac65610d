//! The probabilistic model that `resolve_entities` keeps beside its index
//! (`entity_resolution_model`): reused by later runs, retrained when the settings change or
//! the records double; and pairs that score the same whichever record comes first, which is
//! what lets a kept model give an incremental run the full build's answer.

use std::collections::{BTreeMap, BTreeSet};

use lake::resolve::config::{ResolveConfig, Role};
use lake::resolve::{Entry, Mode, Resolver};

use crate::resolve::{entries_of, incremental_entity_index, partition, seeded_customers, synthetic};
use crate::support::TestProject;

/// `(trained_at, fingerprint, records)` of the kept model, and how many `params` rows it has.
fn kept(p: &TestProject) -> ((String, String, u64), usize) {
    let rows = p.sql_rows(
        "select cast(trained_at as varchar), fingerprint, json_get_int(value, 'records') \
         from semantic.entity_resolution_model where part = 'params'",
    );
    ((rows[0][0].clone(), rows[0][1].clone(), rows[0][2].parse().unwrap()), rows.len())
}

/// `(mode, records_in, records_compared)` of the last run.
fn last_run(p: &TestProject) -> (String, u64, u64) {
    let rows = p.sql_rows(
        "select mode, records_in, records_compared from semantic.entity_resolution_stats order by run_at desc limit 1",
    );
    (rows[0][0].clone(), rows[0][1].parse().unwrap(), rows[0][2].parse().unwrap())
}

#[test]
fn the_trained_model_is_kept_until_the_settings_change_or_the_records_double() {
    let p = TestProject::new();
    let input = synthetic(p.path(), 1_000, 21);
    let text = std::fs::read_to_string(&input).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let rows: Vec<&str> = lines.collect();
    let (a, b) = (rows.len() * 4 / 10, rows.len() / 2);
    seeded_customers(&p);
    let model = incremental_entity_index("raw.customers");
    p.write("models/semantic/entity_index.yml", &model);
    let load = |k: usize, part: &[&str]| {
        p.write(&format!("seeds/customers_{k}.csv"), &format!("{header}\n{}\n", part.join("\n")));
        p.lake(&["seed"]).assert_ok();
        p.lake(&["run"]).assert_ok();
    };

    // The first build trains on what it has.
    load(0, &rows[..a]);
    let (first, params_rows) = kept(&p);
    assert_eq!(params_rows, 1);
    assert_eq!(first.2, a as u64, "trained on the first load's records");

    // A tenth more: the kept model scores them, and the run reads only part of the index.
    load(1, &rows[a..b]);
    assert_eq!(kept(&p).0, first, "the model is kept");
    let (mode, records_in, compared) = last_run(&p);
    assert_eq!(mode, "incremental");
    assert_eq!(compared, (b - a) as u64);
    assert!(records_in < b as u64, "the run read part of the index: {records_in} of {b}");

    // A full rebuild scores with the kept model too.
    p.lake(&["run", "--full-refresh"]).assert_ok();
    assert_eq!(kept(&p).0, first, "a full refresh keeps the model");
    assert_eq!(last_run(&p).0, "full");

    // The records more than double: a new model, with which the run re-resolves every record.
    load(2, &rows[b..]);
    let (second, params_rows) = kept(&p);
    assert_eq!(params_rows, 1, "the table holds one model");
    assert_ne!(second.0, first.0, "retrained");
    assert_eq!(second.1, first.1, "under the same settings");
    assert_eq!(second.2, rows.len() as u64);
    assert_eq!(last_run(&p), ("incremental".to_string(), rows.len() as u64, rows.len() as u64));

    // Other settings: another model.
    let changed = model.replace("params:\n", "params:\n        max_block_size: 800\n");
    assert_ne!(changed, model);
    p.write("models/semantic/entity_index.yml", &changed);
    p.lake(&["run"]).assert_ok();
    let (third, _) = kept(&p);
    assert_ne!(third.1, second.1, "a new fingerprint");
    assert_ne!(third.0, second.0, "retrained");
}

/// The generator's records, and for one in five of them a copy with first and last name
/// swapped (another id, same person).
fn with_swapped_copies(resolver: &Resolver) -> Vec<Entry> {
    let dir = tempfile::tempdir().unwrap();
    let input = synthetic(dir.path(), 400, 13);
    let mut entries = entries_of(resolver, &input);
    let copies: Vec<Entry> = entries
        .iter()
        .step_by(5)
        .filter(|e| e.norm[Role::FirstName.index()].is_some() && e.norm[Role::LastName.index()].is_some())
        .map(|e| {
            let mut copy = Entry::new(&e.source, &format!("{}_swapped", e.source_id), e.norm.clone());
            copy.norm.swap(Role::FirstName.index(), Role::LastName.index());
            copy
        })
        .collect();
    entries.extend(copies);
    entries
}

/// Each matched pair (by ids) with its score.
fn scores(resolution: &lake::resolve::Resolution) -> BTreeMap<(String, String), f64> {
    let id = |i: u32| {
        let e = &resolution.entries[i as usize];
        format!("{}:{}", e.source, e.source_id)
    };
    resolution
        .matches
        .iter()
        .map(|m| {
            let (x, y) = (id(m.a), id(m.b));
            ((x.clone().min(y.clone()), x.max(y)), m.score)
        })
        .collect()
}

#[test]
fn a_pair_scores_the_same_whichever_record_comes_first() {
    let resolver = Resolver::new(ResolveConfig::default(), &Role::ALL).unwrap();
    let entries = with_swapped_copies(&resolver);
    let trained = resolver.resolve(entries.clone(), Mode::Full, 0);
    let resolver = resolver.with_model(trained.model.clone().expect("the default scoring trains a model"));
    let forward = resolver.resolve(entries.clone(), Mode::Full, 0);
    let mut reversed = entries;
    reversed.reverse();
    let backward = resolver.resolve(reversed, Mode::Full, 0);

    let (f, b) = (scores(&forward), scores(&backward));
    let swapped = f.keys().filter(|(x, y)| x.ends_with("_swapped") || y.ends_with("_swapped")).count();
    assert!(swapped > 20, "pairs with swapped names are matched: {swapped}");
    let differ: Vec<_> = f.iter().filter(|(k, s)| b.get(*k) != Some(*s)).take(5).collect();
    assert!(differ.is_empty() && f.len() == b.len(), "scores depend on the order: {differ:?}");
    let ids = |r: &lake::resolve::Resolution| r.assigned.iter().map(|a| a.entity_id.clone()).collect::<Vec<_>>();
    let (pf, pb): (BTreeSet<_>, BTreeSet<_>) =
        (partition(&forward.entries, &ids(&forward)), partition(&backward.entries, &ids(&backward)));
    assert_eq!(pf, pb, "the same clusters in either order");
}
