//! `lake show <table>` and `lake watermarks`: what the catalog holds, read-only.

use super::project_cmds::{connect, existing_table, load, selection};
use super::{CliResult, ExitCodeExt, GlobalArgs, LogFormat, SelectArgs};
use crate::lakehouse::catalog::table_ident;
use crate::lakehouse::summary;
use crate::project::model::Materialized;

pub(super) async fn show(g: &GlobalArgs, name: &str) -> CliResult {
    let (project, _) = load(g)?;
    let lakehouse = connect(&project).await?;
    let table = existing_table(&lakehouse, name).await?;
    let m = table.metadata();
    let schema = m.current_schema();
    let snapshots: Vec<serde_json::Value> = {
        let mut s: Vec<_> = m.snapshots().collect();
        s.sort_by_key(|s| s.timestamp_ms());
        s.iter()
            .map(|s| {
                serde_json::json!({
                    "snapshot_id": s.snapshot_id(),
                    "parent_id": s.parent_snapshot_id(),
                    "sequence_number": s.sequence_number(),
                    "timestamp": s.timestamp().map(|t| t.to_rfc3339()).unwrap_or_default(),
                    "operation": s.summary().operation.as_str(),
                    "summary": s.summary().additional_properties.iter().collect::<std::collections::BTreeMap<_, _>>(),
                })
            })
            .collect()
    };
    if g.log_format == LogFormat::Json {
        println!(
            "{}",
            serde_json::json!({
                "table": name,
                "location": m.location(),
                "metadata_location": table.metadata_location(),
                "format_version": format!("{:?}", m.format_version()),
                "current_snapshot_id": m.current_snapshot_id(),
                "schema": serde_json::to_value(schema.as_ref()).unwrap_or_default(),
                "partition_spec": serde_json::to_value(m.default_partition_spec().as_ref()).unwrap_or_default(),
                "properties": m.properties(),
                "snapshots": snapshots,
            })
        );
        return Ok(0);
    }
    println!("table     {name}");
    println!("location  {}", m.location());
    if let Some(l) = table.metadata_location() {
        println!("metadata  {l}");
    }
    println!("format    {:?}", m.format_version());
    println!("\nschema (id {}):", schema.schema_id());
    for f in schema.as_struct().fields() {
        println!(
            "  {:>3}  {:<28} {}{}",
            f.id,
            f.name,
            f.field_type,
            if f.required { " not null" } else { "" }
        );
    }
    let spec = m.default_partition_spec();
    if spec.is_unpartitioned() {
        println!("\npartitioning: none");
    } else {
        println!("\npartitioning:");
        for p in spec.fields() {
            let source = schema.field_by_id(p.source_id).map(|f| f.name.clone()).unwrap_or_default();
            println!("  {}({source}) as {}", p.transform, p.name);
        }
    }
    println!("\nsnapshots ({}; current {}):", snapshots.len(), m.current_snapshot_id().map(|i| i.to_string()).unwrap_or("none".into()));
    for s in &snapshots {
        println!(
            "  {}  {}  {}",
            s["snapshot_id"], s["timestamp"].as_str().unwrap_or(""), s["operation"].as_str().unwrap_or("")
        );
        if let Some(map) = s["summary"].as_object() {
            for (k, v) in map {
                println!("      {k} = {}", v.as_str().unwrap_or(""));
            }
        }
    }
    Ok(0)
}

pub(super) async fn watermarks(g: &GlobalArgs, args: &SelectArgs) -> CliResult {
    let (project, graph) = load(g)?;
    let selected = selection(&graph, args)?;
    let lakehouse = connect(&project).await?;
    let mut rows = Vec::new();
    for i in selected {
        let m = graph.model(i);
        if m.config.materialized != Materialized::Incremental {
            continue;
        }
        let table = lakehouse
            .load_table(&table_ident(&m.table_name()).usage()?)
            .await
            .environment()?;
        let stored = table.as_ref().and_then(summary::watermark);
        rows.push(serde_json::json!({
            "model": m.name,
            "relation": m.table_name(),
            "column": m.config.watermark.as_ref().map(|w| w.as_str()),
            "built": table.is_some(),
            "watermark": stored.as_ref().map(|w| w.value.clone()),
            "type": stored.as_ref().map(|w| w.data_type.clone()),
            "snapshot_id": stored.as_ref().map(|w| w.snapshot_id),
        }));
    }
    if g.log_format == LogFormat::Json {
        for r in &rows {
            println!("{r}");
        }
        return Ok(0);
    }
    println!("{:<36} {:<16} {:<32} snapshot", "model", "column", "watermark");
    for r in &rows {
        let wm = match (&r["built"], r["watermark"].as_str()) {
            (serde_json::Value::Bool(false), _) => "(not built)".to_string(),
            (_, Some(w)) => w.to_string(),
            _ => "(none)".to_string(),
        };
        println!(
            "{:<36} {:<16} {:<32} {}",
            r["relation"].as_str().unwrap_or(""),
            r["column"].as_str().unwrap_or("-"),
            wm,
            r["snapshot_id"]
        );
    }
    Ok(0)
}
