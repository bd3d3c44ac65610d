//! `delete_when`: rows a merge model marks as deletions remove their key, in copy-on-write and
//! merge-on-read alike; a full refresh leaves them out; the column is never stored.

use crate::support::TestProject;

fn project(mode: &str) -> TestProject {
    let p = TestProject::new();
    p.write(
        "seeds/seeds.yml",
        "seeds:\n  - name: people\n    config:\n      files: \"people*.csv\"\n      column_types: {id: bigint, name: varchar, version: int, gone: boolean}\n",
    );
    p.write("seeds/people_1.csv", "id,name,version,gone\n1,ann,1,false\n2,bob,1,false\n3,cy,1,false\n");
    p.write("models/sources.yml", "sources:\n  - name: raw\n    tables:\n      - name: people\n");
    p.write(
        "models/staging/people.sql",
        &format!(
            "{{{{ config(materialized='incremental', incremental_strategy='merge', unique_key='id', watermark='snapshot', \
             delete_when='gone', merge_mode='{mode}') }}}}\n\
             select id, name, gone from (select *, row_number() over (partition by id order by version desc) as rn \
             from {{{{ source('raw', 'people') }}}}) where rn = 1\n"
        ),
    );
    p
}

fn people(p: &TestProject) -> Vec<Vec<String>> {
    p.sql_rows("select id, name from staging.people order by id")
}

#[test]
fn marked_rows_delete_their_keys_in_both_merge_modes() {
    for mode in ["copy-on-write", "merge-on-read"] {
        let p = project(mode);
        p.lake(&["seed"]).assert_ok();
        p.lake(&["run"]).assert_ok();
        assert_eq!(people(&p), [["1", "ann"], ["2", "bob"], ["3", "cy"]], "{mode}");
        // The column is not stored.
        let columns = p.sql_rows("select column_name from information_schema.columns where table_schema = 'staging' and table_name = 'people' order by 1");
        assert_eq!(columns, [["id"], ["name"]], "{mode}");

        // bob is deleted, cy renamed, dee new; deleting a key that was never there is a no-op.
        p.write("seeds/people_2.csv", "id,name,version,gone\n2,,2,true\n3,cyd,2,false\n4,dee,1,false\n9,,1,true\n");
        p.lake(&["seed"]).assert_ok();
        p.lake(&["run"]).assert_ok();
        let after = people(&p);
        assert_eq!(after, [["1", "ann"], ["3", "cyd"], ["4", "dee"]], "{mode}");
        let result = &p.run_results()["results"][0];
        assert!(result["input_files_read"].is_object(), "{mode}: an incremental merge: {result}");
        assert_eq!(result["rows_written"], 2, "{mode}: {result}");
        if mode == "merge-on-read" {
            assert_eq!(result["files_rewritten"], 0, "{result}");
            assert!(result["delete_files_added"].as_u64().unwrap() >= 1, "{result}");
        }
        crate::support::readers::assert_readers_match_lake(&p);

        p.lake(&["run", "--full-refresh"]).assert_ok();
        assert_eq!(people(&p), after, "{mode}: a full refresh leaves the deletions out");
    }
}

#[test]
fn a_missing_or_non_boolean_delete_when_column_is_named() {
    let p = project("copy-on-write");
    p.lake(&["seed"]).assert_ok();
    let sql = std::fs::read_to_string(p.path().join("models/staging/people.sql")).unwrap();
    p.write("models/staging/people.sql", &sql.replace("select id, name, gone from", "select id, name from"));
    let out = p.lake(&["run"]);
    assert_ne!(out.code, 0);
    assert!(out.all().contains("`gone`") && out.all().contains("delete_when"), "{}", out.all());
    p.write("models/staging/people.sql", &sql.replace("select id, name, gone from", "select id, name, name as gone from"));
    let out = p.lake(&["run"]);
    assert_ne!(out.code, 0);
    assert!(out.all().contains("not boolean"), "{}", out.all());
}
