//! Entity resolution: normalization rules, `lake resolve` on real files, accuracy on the
//! seeded synthetic customers, incremental resolution in chunks, and the `resolve_entities`
//! model keeping stable ids in Iceberg tables.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use lake::resolve::config::{ResolveConfig, Role};
use lake::resolve::normalize::{Normalizer, address, date, email, email_basic, name, phone, postcode, text};
use lake::resolve::{Entry, Mode, Resolver};

use crate::support::TestProject;

#[test]
fn email_rules_fold_provider_variants_and_keep_the_rest() {
    assert_eq!(email(" John.Smith@GMAIL.com ").as_deref(), Some("johnsmith@gmail.com"));
    assert_eq!(email("j.o.h.n.smith+shop@googlemail.com").as_deref(), Some("johnsmith@gmail.com"));
    assert_eq!(email("john.smith+news@outlook.com").as_deref(), Some("john.smith@outlook.com"));
    // Dots matter outside Gmail; Yahoo's plus is part of the address.
    assert_eq!(email("john.smith@yahoo.com").as_deref(), Some("john.smith@yahoo.com"));
    assert_eq!(email("john+x@yahoo.com").as_deref(), Some("john+x@yahoo.com"));
    assert_eq!(email("Ann@Company.co.uk.").as_deref(), Some("ann@company.co.uk"));
    assert_eq!(email("ann.lee@example.com").as_deref(), Some("ann.lee@example.com"));
    for bad in ["", "   ", "not-an-email", "@gmail.com", "ann@", "ann@localhost", "a b@x.com"] {
        assert_eq!(email(bad), None, "{bad:?}");
    }
    for placeholder in ["none@none.com", "noemail@gmail.com", "test@test.com", "anyone@none.com"] {
        assert_eq!(email(placeholder), None, "{placeholder:?}");
    }
    // The basic rule only trims and lower-cases.
    assert_eq!(email_basic(" J.Smith+x@GoogleMail.com").as_deref(), Some("j.smith+x@googlemail.com"));
}

#[test]
fn phone_rule_gives_e164_for_national_and_international_forms() {
    let us = "+12127360100";
    for form in ["(212) 736-0100", "212-736-0100", "212.736.0100", "+1 212 736 0100", "1-212-736-0100", "001 212 736 0100"] {
        assert_eq!(phone(form, "US").as_deref(), Some(us), "{form:?}");
    }
    // UK and German mobiles, written nationally with their region, or internationally.
    assert_eq!(phone("07911 123456", "GB").as_deref(), Some("+447911123456"));
    assert_eq!(phone("+44 7911 123456", "US").as_deref(), Some("+447911123456"));
    assert_eq!(phone("0044 7911 123456", "DE").as_deref(), Some("+447911123456"));
    assert_eq!(phone("0151 23456780", "DE").as_deref(), Some("+4915123456780"));
    // With a country code the default region does not matter (regression: phonenumber
    // 0.3.10 read `+49 151…` with region US as `+49 51…`).
    for form in ["+49 151 23456780", "+4915123456780", "0049 151 23456780"] {
        for region in ["US", "DE", "GB"] {
            assert_eq!(phone(form, region).as_deref(), Some("+4915123456780"), "{form:?} in {region}");
        }
    }
    // A national number read in the wrong region is not a number there.
    assert_eq!(phone("07911 123456", "US"), None);
    // Fake and junk numbers are null.
    for fake in ["000-000-0000", "123-456-7890", "(555) 555-5555", "1111111111", "+1 999 999 9999", "n/a", "12"] {
        assert_eq!(phone(fake, "US"), None, "{fake:?}");
    }
    // The rule by name uses the configured default region.
    let rule = Normalizer::from_name("phone").unwrap();
    assert_eq!(rule.apply("030 901820", "DE").as_deref(), Some("+4930901820"));
}

#[test]
fn name_and_text_rules_fold_unicode_titles_and_punctuation() {
    assert_eq!(name("Dr. José O'Brien").as_deref(), Some("jose obrien"));
    assert_eq!(name("  ZOË   Müller-Lüdenscheidt ").as_deref(), Some("zoe muller ludenscheidt"));
    assert_eq!(name("Mr. Søren Kierkegaard Jr.").as_deref(), Some("soren kierkegaard"));
    assert_eq!(name("Łukasz Wiśniewski").as_deref(), Some("lukasz wisniewski"));
    assert_eq!(name("Straße").as_deref(), Some("strasse"));
    assert_eq!(name("Mrs."), None);
    assert_eq!(name("  "), None);
    assert_eq!(text("Café  RÉSUMÉ").as_deref(), Some("cafe resume"));
}

#[test]
fn date_postcode_and_address_rules() {
    for form in ["1984-03-07", "1984-03-07T00:00:00Z", "19840307", "07.03.1984", "1984/03/07", "03/07/1984"] {
        assert_eq!(date(form).as_deref(), Some("1984-03-07"), "{form:?}");
    }
    assert_eq!(date("1984-02-30"), None);
    assert_eq!(date("yesterday"), None);
    assert_eq!(postcode("sw1a 1aa").as_deref(), Some("SW1A1AA"));
    assert_eq!(postcode("02139-4307").as_deref(), Some("02139"));
    assert_eq!(postcode(" 10115 ").as_deref(), Some("10115"));
    assert_eq!(address("12 North Main Street, Apartment 4").as_deref(), Some("12 n main st apt 4"));
    assert_eq!(address("12 N. Main St., Apt 4").as_deref(), Some("12 n main st apt 4"));
    assert_eq!(Normalizer::Raw.apply("  Keep  This ", "US").as_deref(), Some("Keep  This"));
    assert_eq!(Normalizer::Raw.apply("   ", "US"), None);
    // Every rule can be chosen by name.
    for (rule_name, rule) in Normalizer::ALL {
        assert_eq!(Normalizer::from_name(rule_name), Some(rule));
        assert_eq!(rule.name(), rule_name);
    }
    assert_eq!(Normalizer::from_name("soundex"), None);
}

/// `(id, value per role)` records resolved at once with the default rules.
fn resolve_at_once(resolver: &Resolver, rows: &[(String, Vec<(Role, String)>)]) -> Vec<String> {
    let entries = rows
        .iter()
        .map(|(id, values)| {
            let raw: Vec<(Role, &str)> = values.iter().map(|(r, v)| (*r, v.as_str())).collect();
            Entry::new("s", id, resolver.normalize(&raw))
        })
        .collect();
    resolver.resolve(entries, Mode::Full, 0).assigned.into_iter().map(|a| a.entity_id).collect()
}

#[test]
fn families_sharing_a_phone_stay_apart_and_swapped_names_match() {
    // The deterministic rules' `phone_name`; four records are too few to train a model on.
    let roles = [Role::Email, Role::Phone, Role::FirstName, Role::LastName, Role::Postcode];
    let rules = ResolveConfig::from_toml(crate::resolve_fs::RULES).unwrap();
    let resolver = Resolver::new(rules, &roles).unwrap();
    let row = |id: &str, first: &str, last: &str, phone: &str, postcode: &str| {
        let values = vec![
            (Role::FirstName, first.to_string()),
            (Role::LastName, last.to_string()),
            (Role::Phone, phone.to_string()),
            (Role::Postcode, postcode.to_string()),
        ];
        (id.to_string(), values)
    };
    let rows = vec![
        row("a", "Maria", "Garcia", "(212) 736-0100", "10001"),
        row("b", "Pedro", "Garcia", "212 736 0100", "10001"),
        row("c", "Garcia", "Maria", "+1 212 736 0100", "10002"),
        row("d", "Mari", "Garcia", "", "10001"),
    ];
    let ids = resolve_at_once(&resolver, &rows);
    assert_eq!(ids[0], ids[2], "swapped first and last names match on the phone");
    assert_eq!(ids[0], ids[3], "a typo in the first name matches on the postcode");
    assert_ne!(ids[0], ids[1], "a family member sharing the phone is someone else");
}

pub(crate) fn lake_resolve(dir: &Path, args: &[&str]) -> crate::support::Output {
    let out = Command::new(crate::support::lake_bin())
        .args(["resolve"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run lake");
    crate::support::Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Rows of a CSV we wrote (no quoted commas in ids), without the header.
fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().skip(1).map(|l| l.split(',').map(str::to_string).collect()).collect()
}

/// `id -> entity_id` from clusters.csv.
pub(crate) fn clusters(dir: &Path) -> HashMap<String, String> {
    csv_rows(&dir.join("clusters.csv")).into_iter().map(|r| (r[0].clone(), r[1].clone())).collect()
}

#[test]
fn resolve_reads_csv_with_spaced_separators_and_quoted_fields() {
    let p = TestProject::empty();
    p.write(
        "people.csv",
        "id, email, full_first, last, address\n\
         1, ann@x.com, \"Ann\", \"Lee\", \"12 Main Street, Apt 4\"\n\
         2, \"ANN@X.COM \", Anne, Lee, \"12 Main St., Apt 4\"\n\
         3, bob@y.com, Bob, \"O'Neil, Jr.\", \"the \"\"old\"\" mill\nsecond line\"\n\
         4, , Bob, O'Neil, \"the \"\"old\"\" mill\nsecond line\"\n\
         5, carl@z.com, Carl, Zed,\n",
    );
    let out = lake_resolve(
        p.path(),
        &["--input", "people.csv", "--id", "id", "--columns", "email=email,first_name=full_first,last_name=last,address=address", "--output", "out"],
    );
    out.assert_ok();
    let c = clusters(&p.path().join("out"));
    assert_eq!(c.len(), 5);
    assert_eq!(c["1"], c["2"], "same email after normalization");
    assert_eq!(c["3"], c["4"], "same multi-line quoted address and names");
    assert_ne!(c["1"], c["3"]);
    assert_ne!(c["5"], c["1"]);
    let pairs = csv_rows(&p.path().join("out/pairs.csv"));
    let mut found: Vec<(String, String, String)> =
        pairs.iter().map(|r| (r[0].clone(), r[1].clone(), r[2].clone())).collect();
    found.sort();
    assert_eq!(
        found,
        vec![
            ("1".into(), "2".into(), "email".into()),
            // The first blocking rule that found the pair (the probabilistic scoring's).
            ("3".into(), "4".into(), "name".into())
        ]
    );
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.path().join("out/stats.json")).unwrap()).unwrap();
    assert_eq!(stats["records"], 5);
    assert_eq!(stats["clusters"], 3);
}

#[test]
fn resolve_errors_name_the_file_line_and_column() {
    let p = TestProject::empty();
    p.write("a.csv", "id,email\n1,a@x.com\n2,\"b@x.com\n");
    let out = lake_resolve(p.path(), &["--input", "a.csv", "--id", "id", "--columns", "email=email", "--output", "o"]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains("a.csv line 3") && out.stderr.contains("not closed"), "{}", out.stderr);

    p.write("b.csv", "id,email\n1,a@x.com\n1,b@x.com\n");
    let out = lake_resolve(p.path(), &["--input", "b.csv", "--id", "id", "--columns", "email=email", "--output", "o"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("b.csv line 3") && out.stderr.contains("`1` appears twice"), "{}", out.stderr);

    let out = lake_resolve(p.path(), &["--input", "b.csv", "--id", "id", "--columns", "email=mail", "--output", "o"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("no column `mail`") && out.stderr.contains("id, email"), "{}", out.stderr);

    let out = lake_resolve(p.path(), &["--input", "b.csv", "--id", "id", "--columns", "emial=email", "--output", "o"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("unknown role `emial`"), "{}", out.stderr);

    p.write("rules.toml", "[[rules]]\nname = \"p\"\nblock_on = [\"phone\"]\n");
    let out = lake_resolve(
        p.path(),
        &["--input", "b.csv", "--id", "id", "--columns", "email=email", "--config", "rules.toml", "--output", "o"],
    );
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("rule `p` uses `phone`"), "{}", out.stderr);
}

#[test]
fn oversized_blocks_are_skipped_and_reported() {
    let p = TestProject::empty();
    let mut csv = String::from("id,email,first,last,zip\n");
    for i in 0..6 {
        csv.push_str(&format!("{i},person{i}@x.com,Ann,Lee{i},90210\n"));
    }
    csv.push_str("6,person0@x.com,Zed,Other,11111\n");
    p.write("in.csv", &csv);
    p.write("rules.toml", &format!("max_block_size = 5\n{}", crate::resolve_fs::RULES));
    let out = lake_resolve(
        p.path(),
        &["--input", "in.csv", "--id", "id", "--columns", "email=email,first_name=first,last_name=last,postcode=zip", "--config", "rules.toml", "--output", "o"],
    );
    out.assert_ok();
    assert!(out.stdout.contains("skipped block: rule postcode_name key \"90210\" has 6 records"), "{}", out.stdout);
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.path().join("o/stats.json")).unwrap()).unwrap();
    assert_eq!(stats["skipped_blocks"], 1);
    let c = clusters(&p.path().join("o"));
    assert_eq!(c["0"], c["6"], "the email block is still compared");
    assert_eq!(stats["comparisons"], 1, "only the email pair is compared");
}

/// Generates the seeded synthetic customers with known truth.
pub(crate) fn synthetic(dir: &Path, people: usize, seed: u64) -> PathBuf {
    let out = dir.join(format!("customers_{people}_{seed}.csv"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/gen_customers.py");
    let status = Command::new("python3")
        .arg(script)
        .args(["--people", &people.to_string(), "--seed", &seed.to_string(), "--out"])
        .arg(&out)
        .status()
        .expect("python3 runs the generator");
    assert!(status.success());
    out
}

/// Pairwise precision and recall of predicted clusters against the truth.
pub(crate) fn precision_recall(predicted: &HashMap<String, String>, truth: &HashMap<String, String>) -> (f64, f64) {
    let pairs = |groups: HashMap<&str, u64>| groups.values().map(|n| n * (n - 1) / 2).sum::<u64>();
    let mut by_pred: HashMap<&str, u64> = HashMap::new();
    let mut by_true: HashMap<&str, u64> = HashMap::new();
    let mut by_both: HashMap<(&str, &str), u64> = HashMap::new();
    for (id, entity) in predicted {
        let t = truth[id].as_str();
        *by_pred.entry(entity).or_default() += 1;
        *by_true.entry(t).or_default() += 1;
        *by_both.entry((entity, t)).or_default() += 1;
    }
    let tp: u64 = by_both.values().map(|n| n * (n - 1) / 2).sum();
    (tp as f64 / pairs(by_pred) as f64, tp as f64 / pairs(by_true) as f64)
}

pub(crate) fn truth_of(csv: &Path) -> HashMap<String, String> {
    let mut truth = HashMap::new();
    lake::resolve::io::for_each_row(csv, &["record_id", "true_id"], |v| {
        truth.insert(v[0].unwrap().to_string(), v[1].unwrap().to_string());
        Ok(())
    })
    .unwrap();
    truth
}

const ALL_COLUMNS: &str =
    "email=email,phone=phone,first_name=first_name,last_name=last_name,dob=dob,postcode=postcode,address=address";

#[test]
fn synthetic_customers_resolve_with_high_precision_and_recall() {
    let p = TestProject::empty();
    let input = synthetic(p.path(), 20_000, 11);
    let out = lake_resolve(
        p.path(),
        &["--input", input.to_str().unwrap(), "--id", "record_id", "--columns", ALL_COLUMNS, "--output", "out"],
    );
    out.assert_ok();
    let predicted = clusters(&p.path().join("out"));
    let truth = truth_of(&input);
    assert_eq!(predicted.len(), truth.len());
    let (precision, recall) = precision_recall(&predicted, &truth);
    let f1 = 2.0 * precision * recall / (precision + recall);
    println!("synthetic 20k people: precision {precision:.4}, recall {recall:.4}, F1 {f1:.4}");
    // The default probabilistic scoring; the deterministic rules, written for this generator,
    // reach 0.99 on both (bench/resolve.py), and far less on data they were not written for.
    assert!(precision >= 0.98, "precision {precision:.4} (recall {recall:.4})");
    assert!(recall >= 0.97, "recall {recall:.4} (precision {precision:.4})");
}

/// Entries of the synthetic file, in file order.
pub(crate) fn entries_of(resolver: &Resolver, csv: &Path) -> Vec<Entry> {
    let roles = Role::ALL;
    let mut wanted = vec!["record_id", "source"];
    wanted.extend(roles.iter().map(|r| r.name()));
    let mut entries = Vec::new();
    lake::resolve::io::for_each_row(csv, &wanted, |v| {
        let raw: Vec<(Role, &str)> =
            roles.iter().zip(&v[2..]).filter_map(|(r, x)| x.map(|x| (*r, x))).collect();
        entries.push(Entry::new(v[1].unwrap(), v[0].unwrap(), resolver.normalize(&raw)));
        Ok(())
    })
    .unwrap();
    entries
}

/// Clusters as sets of (source, id), independent of the ids given to them.
pub(crate) fn partition(entries: &[Entry], ids: &[String]) -> BTreeSet<BTreeSet<String>> {
    let mut groups: HashMap<&str, BTreeSet<String>> = HashMap::new();
    for (e, id) in entries.iter().zip(ids) {
        groups.entry(id).or_default().insert(format!("{}:{}", e.source, e.source_id));
    }
    groups.into_values().collect()
}

#[test]
fn ten_chunks_resolve_to_the_same_clusters_as_once_and_keep_ids() {
    let dir = tempfile::tempdir().unwrap();
    let input = synthetic(dir.path(), 4_000, 5);
    let resolver = Resolver::new(ResolveConfig::default(), &Role::ALL).unwrap();
    let all = entries_of(&resolver, &input);
    let at_once = resolver.resolve(all.clone(), Mode::Full, 0);
    // The default scoring is probabilistic: the chunks score with the model the run at once
    // trained, as an incremental model run scores with the model its first build kept.
    let resolver = resolver.with_model(at_once.model.clone().expect("the default scoring trains a model"));
    let at_once_ids: Vec<String> = at_once.assigned.iter().map(|a| a.entity_id.clone()).collect();
    let expected = partition(&at_once.entries, &at_once_ids);

    // Ten arriving chunks, each resolved against the index left by the ones before.
    let chunk = all.len().div_ceil(10);
    let mut index: Vec<Entry> = Vec::new();
    let mut ids_before: HashSet<String> = HashSet::new();
    for (k, arriving) in all.chunks(chunk).enumerate() {
        let compare_from = index.len();
        let mut entries = std::mem::take(&mut index);
        entries.extend(arriving.iter().cloned());
        let resolution = resolver.resolve(entries, Mode::Incremental { compare_from }, k as i64 + 1);
        let merged: HashSet<&str> = resolution.merges.iter().map(|m| m.merged_id.as_str()).collect();
        let ids_now: HashSet<String> = resolution.assigned.iter().map(|a| a.entity_id.clone()).collect();
        for id in &ids_before {
            assert!(
                ids_now.contains(id) || merged.contains(id.as_str()),
                "chunk {k}: entity {id} vanished without a recorded merge"
            );
        }
        for m in &resolution.merges {
            assert!(ids_now.contains(&m.into_id), "a merge points at a live id");
        }
        // The index for the next chunk: every record with its entity.
        index = resolution.into_index();
        ids_before = ids_now;
    }
    let chunk_ids: Vec<String> = index.iter().map(|e| e.prior.as_ref().unwrap().entity_id.clone()).collect();
    assert_eq!(partition(&index, &chunk_ids), expected, "chunked clusters equal clusters at once");

    // A full rebuild over the final index keeps every id.
    let rebuilt = resolver.resolve(index.clone(), Mode::Full, 99);
    for (e, a) in index.iter().zip(&rebuilt.assigned) {
        assert_eq!(&a.entity_id, &e.prior.as_ref().unwrap().entity_id, "{}:{}", e.source, e.source_id);
    }
    assert!(rebuilt.merges.is_empty());
}

/// Seeds `raw.customers` from `seeds/customers_*.csv` in the generator's columns.
pub(crate) fn seeded_customers(p: &TestProject) {
    let types = "record_id: varchar, source: varchar, true_id: varchar, first_name: varchar, last_name: varchar, \
                 email: varchar, phone: varchar, dob: varchar, postcode: varchar, address: varchar";
    p.write(
        "seeds/seeds.yml",
        &format!("seeds:\n  - name: customers\n    config:\n      files: \"customers_*.csv\"\n      column_types: {{{types}}}\n"),
    );
    p.write("models/sources.yml", "sources:\n  - name: raw\n    tables:\n      - name: customers\n");
}

/// `source:source_id -> entity_id` of a project's entity index.
/// An incremental `resolve_entities` model over `input`'s generator columns (gen_customers.py).
pub(crate) fn incremental_entity_index(input: &str) -> String {
    format!(
        "models:\n  - name: entity_index\n    config:\n      materialized: incremental\n      incremental_strategy: merge\n      \
         unique_key: [source, source_id]\n      watermark: snapshot\n      function: resolve_entities\n      inputs: [{input}]\n      \
         params:\n        sources:\n          {input}: {{id: record_id, email: email, phone: phone, first_name: first_name, \
         last_name: last_name, dob: dob, postcode: postcode, address: address}}\n"
    )
}

fn index_ids(p: &TestProject, table: &str) -> HashMap<String, String> {
    p.sql_rows(&format!("select source || ':' || source_id, entity_id from {table}"))
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect()
}

#[test]
fn resolve_entities_model_keeps_ids_across_incremental_runs_and_full_refresh() {
    let p = TestProject::new();
    let input = synthetic(p.path(), 1_500, 3);
    let text = std::fs::read_to_string(&input).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let rows: Vec<&str> = lines.collect();
    seeded_customers(&p);
    p.write("models/semantic/entity_index.yml", &incremental_entity_index("raw.customers"));
    let chunks: Vec<&[&str]> = rows.chunks(rows.len().div_ceil(3)).collect();
    let mut before: HashMap<String, String> = HashMap::new();
    for (k, chunk) in chunks.iter().enumerate() {
        p.write(&format!("seeds/customers_{k}.csv"), &format!("{header}\n{}\n", chunk.join("\n")));
        p.lake(&["seed"]).assert_ok();
        let snapshots = if k == 0 { 0 } else { p.snapshot_count("semantic.entity_index") };
        p.lake(&["run"]).assert_ok();
        assert_eq!(p.snapshot_count("semantic.entity_index"), snapshots + 1, "one snapshot per run");
        let now = index_ids(&p, "semantic.entity_index");
        assert_eq!(now.len(), chunks[..=k].iter().map(|c| c.len()).sum::<usize>(), "one row per record");
        let merged: HashSet<String> = p
            .sql_rows("select merged_id from semantic.entity_merges")
            .into_iter()
            .map(|r| r[0].clone())
            .collect();
        let live: HashSet<&String> = now.values().collect();
        for (record, id) in &before {
            assert!(
                now.get(record) == Some(id) || merged.contains(id),
                "run {k}: {record} moved from {id} to {:?} without a recorded merge",
                now.get(record)
            );
            assert!(live.contains(id) || merged.contains(id));
        }
        before = now;
    }
    // Nothing new: the model is up to date, no new index snapshot.
    let snapshots = p.snapshot_count("semantic.entity_index");
    p.lake(&["run"]).assert_ok();
    assert_eq!(p.snapshot_count("semantic.entity_index"), snapshots);

    // A full rebuild compares everything at once: the same entities under the same ids.
    p.lake(&["run", "--full-refresh"]).assert_ok();
    let rebuilt = index_ids(&p, "semantic.entity_index");
    assert_eq!(rebuilt, before, "a full rebuild keeps every entity id");

    let stats = p.sql_rows("select mode, records_in, candidate_pairs, clusters from semantic.entity_resolution_stats order by run_at");
    // (The run with nothing new was skipped as up to date: no stats row.)
    assert_eq!(stats.len(), 4, "{stats:?}");
    assert_eq!(stats[0][0], "full", "the first run builds the table");
    assert_eq!(stats[1][0], "incremental");
    assert_eq!(stats[3][0], "full");
    assert_eq!(stats[3][1], rows.len().to_string());
    assert!(p.sql_count("select count(*) from semantic.blocking_index") > rows.len() as i64);

    // Accuracy holds in the lakehouse too.
    let truth = truth_of(&input);
    let predicted: HashMap<String, String> =
        rebuilt.into_iter().map(|(k, v)| (k.split_once(':').unwrap().1.to_string(), v)).collect();
    let (precision, recall) = precision_recall(&predicted, &truth);
    // The default probabilistic scoring, with the model kept from the second run (trained on
    // two thirds of the records); see `synthetic_customers_resolve_with_high_precision_and_recall`.
    assert!(precision >= 0.98 && recall >= 0.96, "precision {precision:.4}, recall {recall:.4}");
}

#[test]
fn fellegi_sunter_scoring_weighs_comparison_levels() {
    let config = ResolveConfig::from_toml(
        r#"
[[rules]]
name = "postcode"
block_on = ["postcode"]

[scoring]
method = "fellegi_sunter"
prior = 0.01
threshold = 0.9

[[scoring.comparisons]]
field = "email"
levels = [{ method = "exact", m = 0.9, u = 0.0001 }]
else = { m = 0.1, u = 0.9999 }

[[scoring.comparisons]]
field = "name"
levels = [{ method = "jaro_winkler", min = 0.95, m = 0.8, u = 0.01 }, { method = "jaro_winkler", min = 0.85, m = 0.15, u = 0.05 }]
else = { m = 0.05, u = 0.94 }
"#,
    )
    .unwrap();
    let roles = [Role::Email, Role::FirstName, Role::LastName, Role::Postcode];
    let resolver = Resolver::new(config, &roles).unwrap();
    let row = |id: &str, email: &str, first: &str, last: &str| {
        let values = vec![
            (Role::Email, email.to_string()),
            (Role::FirstName, first.to_string()),
            (Role::LastName, last.to_string()),
            (Role::Postcode, "10001".to_string()),
        ];
        (id.to_string(), values)
    };
    let rows = vec![
        row("a", "ann@x.com", "Ann", "Lee"),
        row("b", "ann@x.com", "Anne", "Lee"),   // same email, near name: match
        row("c", "", "Ann", "Lee"),             // no email, same name: prior 1% x name weight 80 → 0.45
        row("d", "zed@y.com", "Zed", "Other"),  // other email and name: no match
    ];
    let ids = resolve_at_once(&resolver, &rows);
    assert_eq!(ids[0], ids[1]);
    assert_ne!(ids[0], ids[2], "a name alone does not reach the threshold");
    assert_ne!(ids[0], ids[3]);

    let bad = ResolveConfig::from_toml("[scoring]\nmethod = \"fellegi_sunter\"\nthreshold = 2\ncomparisons = []\n").unwrap();
    let err = Resolver::new(bad, &roles).unwrap_err().to_string();
    assert!(err.contains("threshold"), "{err}");
    let err = ResolveConfig::from_toml("[[rules]]\nname = \"x\"\nblock_on = [\"emial\"]\n").unwrap_err();
    assert!(format!("{err:#}").contains("unknown role `emial`"), "{err:#}");
}


#[test]
fn a_changed_record_is_compared_again_and_merges_are_recorded() {
    let resolver = Resolver::new(ResolveConfig::default(), &[Role::Email]).unwrap();
    let entry = |id: &str, email: &str| Entry::new("crm", id, resolver.normalize(&[(Role::Email, email)]));
    // Run 1: two separate people.
    let first = resolver.resolve(vec![entry("a", "ann@x.com"), entry("b", "bob@y.com")], Mode::Full, 1);
    assert_ne!(first.assigned[0].entity_id, first.assigned[1].entity_id);
    let index = first.into_index();
    let (ann_id, bob_id) = (index[0].prior.clone().unwrap().entity_id, index[1].prior.clone().unwrap().entity_id);

    // Run 2 (incremental): b changes its email to ann's; the changed record replaces the old
    // one, is compared against the index, and the two entities become one.
    let mut changed = entry("b", "ANN@x.com");
    changed.prior = index[1].prior.clone();
    let entries = vec![index[0].clone(), changed];
    let second = resolver.resolve(entries, Mode::Incremental { compare_from: 1 }, 2);
    assert_eq!(second.assigned[0].entity_id, second.assigned[1].entity_id);
    // Both ids were seen at time 1; the survivor is the smaller id and the other is recorded.
    let survivor = second.assigned[0].entity_id.clone();
    let merged = if survivor == ann_id { bob_id } else { ann_id };
    assert_eq!(second.merges, vec![lake::resolve::Merge { merged_id: merged, into_id: survivor }]);
    assert!(second.assigned[1].changed);
    assert_eq!(second.assigned[1].match_rule.as_deref(), Some("email"));
}

#[test]
fn fellegi_sunter_weights_estimated_by_em_from_rough_starting_values() {
    let p = TestProject::empty();
    let input = synthetic(p.path(), 5_000, 3);
    // Blocking rules only; the weights start deliberately wrong (m = u order of magnitude).
    let mut config = String::from("[[rules]]\nname = \"email\"\nblock_on = [\"email\"]\n");
    config.push_str("[[rules]]\nname = \"phone\"\nblock_on = [\"phone\"]\n");
    config.push_str("[[rules]]\nname = \"postcode\"\nblock_on = [\"postcode\"]\n");
    config.push_str("[scoring]\nmethod = \"fellegi_sunter\"\nprior = 0.01\nthreshold = 0.9\nestimate = true\n");
    for field in ["email", "phone", "postcode"] {
        config.push_str(&format!(
            "[[scoring.comparisons]]\nfield = \"{field}\"\nlevels = [{{ method = \"exact\", m = 0.5, u = 0.1 }}]\nelse = {{ m = 0.5, u = 0.9 }}\n"
        ));
    }
    config.push_str(
        "[[scoring.comparisons]]\nfield = \"name\"\nlevels = [{ method = \"jaro_winkler\", min = 0.92, m = 0.5, u = 0.1 }, \
         { method = \"jaro_winkler\", min = 0.8, m = 0.3, u = 0.2 }]\nelse = { m = 0.2, u = 0.7 }\n",
    );
    p.write("em.toml", &config);
    let columns = "email=email,phone=phone,first_name=first_name,last_name=last_name,postcode=postcode";
    let out = lake_resolve(
        p.path(),
        &["--input", input.to_str().unwrap(), "--id", "record_id", "--columns", columns, "--config", "em.toml", "--output", "out"],
    );
    out.assert_ok();
    let (precision, recall) = precision_recall(&clusters(&p.path().join("out")), &truth_of(&input));
    println!("EM-estimated Fellegi-Sunter: precision {precision:.4}, recall {recall:.4}");
    assert!(precision >= 0.97 && recall >= 0.97, "precision {precision:.4}, recall {recall:.4}");
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.path().join("out/stats.json")).unwrap()).unwrap();
    let email = &stats["estimated"]["comparisons"][0]["levels"][0];
    assert!(email["m"].as_f64().unwrap() > 0.9 && email["u"].as_f64().unwrap() < 0.01, "{}", stats["estimated"]);
}
