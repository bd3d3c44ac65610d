//! The Arrow <-> Polars bridge and the Rust model registry.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int64Array,
    RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use lake::engine::polars_bridge::{dataframe_to_record_batches, record_batches_to_dataframe};
use lake::engine::rust_model::{Registry, RustModelCall, RustModelFn, run_rust_model};
use polars::prelude::*;
use serde_json::json;

/// A schema with one nullable column of each common type.
fn mixed_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("price", DataType::Float64, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("active", DataType::Boolean, true),
        Field::new("day", DataType::Date32, true),
        Field::new(
            "ts_utc",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new(
            "ts_local",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            true,
        ),
    ]))
}

/// A batch of `mixed_schema` whose values start at `start`.
fn mixed_batch(start: i64) -> RecordBatch {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![Some(start), None, Some(start + 2)])),
        Arc::new(Float64Array::from(vec![Some(1.5), Some(-2.25), None])),
        Arc::new(StringArray::from(vec![
            Some("alpha"),
            None,
            Some("a longer string than twelve bytes"),
        ])),
        Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])),
        Arc::new(Date32Array::from(vec![Some(19_000), None, Some(-1)])),
        Arc::new(
            TimestampMicrosecondArray::from(vec![Some(1_700_000_000_000_000), Some(0), None])
                .with_timezone("UTC"),
        ),
        Arc::new(TimestampMicrosecondArray::from(vec![
            None,
            Some(-5),
            Some(1_600_000_000_123_456),
        ])),
    ];
    RecordBatch::try_new(mixed_schema(), columns).unwrap()
}

fn batch(columns: Vec<(&str, ArrayRef)>) -> (SchemaRef, RecordBatch) {
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    (batch.schema(), batch)
}

/// The rows of `batches` as display strings, sorted, for order-independent comparisons.
fn sorted_rows(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let options = FormatOptions::new().with_null("null");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for row in 0..batch.num_rows() {
            rows.push(
                formatters
                    .iter()
                    .map(|f| f.value(row).to_string())
                    .collect(),
            );
        }
    }
    rows.sort();
    rows
}

fn column_names(schema: &SchemaRef) -> Vec<&str> {
    schema.fields().iter().map(|f| f.name().as_str()).collect()
}

fn run(
    registry: &Registry,
    function: &str,
    inputs: Vec<(&str, RecordBatch)>,
    params: serde_json::Value,
) -> anyhow::Result<(SchemaRef, Vec<RecordBatch>)> {
    let f: RustModelFn = registry.get(function).expect("function is registered");
    let inputs = inputs
        .into_iter()
        .map(|(name, b)| (name.to_string(), b.schema(), vec![b]))
        .collect();
    let serde_json::Value::Object(params) = params else {
        panic!("params must be an object")
    };
    let call = RustModelCall {
        model: "test_model".into(),
        inputs,
        params,
        this: None,
        is_incremental: false,
        beside: Vec::new(),
    };
    let output = run_rust_model(&f, call)?;
    Ok((output.schema, output.batches))
}

#[test]
fn round_trip_keeps_values_and_types() {
    let schema = mixed_schema();
    let input = mixed_batch(1);
    let df = record_batches_to_dataframe(&schema, std::slice::from_ref(&input)).unwrap();
    assert_eq!(df.shape(), (3, 7));
    assert_eq!(
        df.column("name").unwrap().dtype(),
        &polars::prelude::DataType::String
    );
    assert_eq!(
        df.column("day").unwrap().dtype(),
        &polars::prelude::DataType::Date
    );

    let (out_schema, out) = dataframe_to_record_batches(df).unwrap();
    assert_eq!(out_schema, schema);
    assert_eq!(out, vec![input]);
}

#[test]
fn multiple_batches_become_chunks_and_back() {
    let schema = mixed_schema();
    let inputs = vec![mixed_batch(1), mixed_batch(10), mixed_batch(100)];
    let df = record_batches_to_dataframe(&schema, &inputs).unwrap();
    assert_eq!(df.height(), 9);
    assert_eq!(
        df.column("id").unwrap().as_materialized_series().n_chunks(),
        3
    );

    let (out_schema, out) = dataframe_to_record_batches(df).unwrap();
    assert_eq!(out_schema, schema);
    assert_eq!(out.len(), 3);
    assert_eq!(
        concat_batches(&schema, &out).unwrap(),
        concat_batches(&schema, &inputs).unwrap()
    );
}

#[test]
fn zero_batches_give_an_empty_frame_with_the_schema() {
    let schema = mixed_schema();
    let df = record_batches_to_dataframe(&schema, &[]).unwrap();
    assert_eq!(df.shape(), (0, 7));
    assert_eq!(
        df.column("ts_utc").unwrap().dtype().to_string(),
        "datetime[μs, UTC]"
    );

    let (out_schema, out) = dataframe_to_record_batches(df).unwrap();
    assert_eq!(out_schema, schema);
    assert!(out.is_empty());

    // Empty batches are the same as none.
    let empty = RecordBatch::new_empty(Arc::clone(&schema));
    let df = record_batches_to_dataframe(&schema, &[empty]).unwrap();
    assert_eq!(df.shape(), (0, 7));
}

#[test]
fn batches_not_matching_the_schema_are_rejected() {
    let (_, other) = batch(vec![(
        "id",
        Arc::new(StringArray::from(vec!["x"])) as ArrayRef,
    )]);
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
    let err = record_batches_to_dataframe(&schema, &[other]).unwrap_err();
    assert!(
        format!("{err:#}").contains("column `id` is Utf8 in the batch but Int64 in the schema"),
        "{err:#}"
    );
}

#[test]
fn primitive_columns_are_shared_not_copied() {
    let values = Int64Array::from_iter_values(0..1_000);
    let arrow_ptr = values.values().as_ptr();
    let (schema, input) = batch(vec![("n", Arc::new(values) as ArrayRef)]);

    let df = record_batches_to_dataframe(&schema, &[input]).unwrap();
    let series = df.column("n").unwrap().as_materialized_series();
    let chunk = series.chunks()[0]
        .as_any()
        .downcast_ref::<polars_arrow::array::PrimitiveArray<i64>>()
        .unwrap();
    assert_eq!(
        chunk.values().as_ptr(),
        arrow_ptr,
        "Polars must read the arrow-rs buffer in place"
    );

    // And back: the arrow-rs output reads the same buffer again.
    let (_, out) = dataframe_to_record_batches(df).unwrap();
    let back = out[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap();
    assert_eq!(back.values().as_ptr(), arrow_ptr);
}

#[test]
fn decimals_round_trip() {
    let decimals = Decimal128Array::from(vec![Some(12_345), None, Some(-1)])
        .with_precision_and_scale(10, 2)
        .unwrap();
    let (schema, input) = batch(vec![("amount", Arc::new(decimals) as ArrayRef)]);
    let df = record_batches_to_dataframe(&schema, std::slice::from_ref(&input)).unwrap();
    let (out_schema, out) = dataframe_to_record_batches(df).unwrap();
    assert_eq!(out_schema, schema);
    assert_eq!(out, vec![input]);
}

#[test]
fn polars_types_are_normalised_for_iceberg() {
    let df = df!(
        "u32" => [1u32, 2],
        "u64" => [3u64, 4],
        "s" => ["a", "b"],
        "l" => [Series::new("".into(), ["x", "y"]), Series::new("".into(), ["z"])],
    )
    .unwrap();
    let (schema, out) = dataframe_to_record_batches(df).unwrap();
    let types: Vec<&DataType> = schema.fields().iter().map(|f| f.data_type()).collect();
    assert_eq!(types[0], &DataType::Int64);
    assert_eq!(types[1], &DataType::Int64);
    assert_eq!(types[2], &DataType::Utf8);
    assert!(
        matches!(types[3], DataType::List(item) if item.data_type() == &DataType::Utf8),
        "{:?}",
        types[3]
    );
    assert_eq!(
        sorted_rows(&out),
        vec![vec!["1", "3", "a", "[x, y]"], vec!["2", "4", "b", "[z]"]]
    );
}

#[test]
fn unsigned_overflow_names_the_column() {
    let df = df!("big" => [1u64, u64::MAX]).unwrap();
    let err = dataframe_to_record_batches(df).unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains("column `big`"), "{message}");
}

#[test]
fn custom_function_groups_and_aggregates() {
    let mut registry = Registry::new();
    registry.register("totals", |ctx| {
        let min_total = ctx
            .param("min_total")
            .and_then(|v| v.as_f64())
            .unwrap_or(0.0);
        Ok(ctx
            .input("orders")?
            .group_by([col("customer")])
            .agg([col("amount").sum().alias("total"), len().alias("orders")])
            .filter(col("total").gt_eq(lit(min_total))))
    });
    assert_eq!(registry.names(), vec!["totals"]);

    let (_, orders) = batch(vec![
        (
            "customer",
            Arc::new(StringArray::from(vec!["ann", "bob", "ann", "cy"])) as ArrayRef,
        ),
        (
            "amount",
            Arc::new(Float64Array::from(vec![10.0, 5.0, 2.5, 1.0])) as ArrayRef,
        ),
    ]);
    let (schema, out) = run(
        &registry,
        "totals",
        vec![("orders", orders)],
        json!({"min_total": 2.0}),
    )
    .unwrap();
    assert_eq!(column_names(&schema), vec!["customer", "total", "orders"]);
    assert_eq!(schema.field(2).data_type(), &DataType::Int64);
    assert_eq!(
        sorted_rows(&out),
        vec![vec!["ann", "12.5", "2"], vec!["bob", "5.0", "1"]]
    );
}

#[test]
fn dedupe_latest_keeps_the_latest_row_per_key() {
    let registry = lake::builtins::registry();
    let (_, changes) = batch(vec![
        (
            "id",
            Arc::new(Int64Array::from(vec![1, 1, 2, 1, 2, 3])) as ArrayRef,
        ),
        (
            "updated_at",
            Arc::new(Int64Array::from(vec![
                Some(10),
                Some(30),
                Some(5),
                Some(20),
                Some(5),
                None,
            ])) as ArrayRef,
        ),
        (
            "value",
            Arc::new(StringArray::from(vec!["a", "c", "x", "b", "y", "only"])) as ArrayRef,
        ),
    ]);
    let (_, other) = batch(vec![(
        "id",
        Arc::new(Int64Array::from(vec![9])) as ArrayRef,
    )]);
    let params = json!({"input": "changes", "key": ["id"], "order_by": "updated_at"});
    let (schema, out) = run(
        &registry,
        "dedupe_latest",
        vec![("changes", changes.clone()), ("other", other)],
        params,
    )
    .unwrap();
    assert_eq!(column_names(&schema), vec!["id", "updated_at", "value"]);
    // id 2 ties on updated_at = 5: the row that came last ("y") wins.
    assert_eq!(
        sorted_rows(&out),
        vec![
            vec!["1", "30", "c"],
            vec!["2", "5", "y"],
            vec!["3", "null", "only"]
        ]
    );

    // With one input, `input` may be left out, and `key` may be a single string.
    let params = json!({"key": "value", "order_by": "updated_at"});
    let (_, out) = run(
        &registry,
        "dedupe_latest",
        vec![("changes", changes.clone())],
        params,
    )
    .unwrap();
    assert_eq!(out.iter().map(|b| b.num_rows()).sum::<usize>(), 6);

    let params = json!({"key": "id", "order_by": "nope"});
    let err = run(
        &registry,
        "dedupe_latest",
        vec![("changes", changes)],
        params,
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("has no column `nope`; its columns: id, updated_at, value"),
        "{err:#}"
    );
}

#[test]
fn union_all_stacks_inputs_diagonally() {
    let registry = lake::builtins::registry();
    let (_, shop) = batch(vec![
        ("id", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef),
        (
            "channel",
            Arc::new(StringArray::from(vec!["web", "app"])) as ArrayRef,
        ),
    ]);
    let (_, store) = batch(vec![
        ("id", Arc::new(Int64Array::from(vec![3])) as ArrayRef),
        ("till", Arc::new(Float64Array::from(vec![7.0])) as ArrayRef),
    ]);
    let (schema, out) = run(
        &registry,
        "union_all",
        vec![("raw.shop", shop), ("raw.store", store)],
        json!({}),
    )
    .unwrap();
    assert_eq!(
        column_names(&schema),
        vec!["id", "channel", "till", "_input"]
    );
    assert_eq!(schema.field(2).data_type(), &DataType::Float64);
    assert_eq!(
        sorted_rows(&out),
        vec![
            vec!["1", "web", "null", "raw.shop"],
            vec!["2", "app", "null", "raw.shop"],
            vec!["3", "null", "7.0", "raw.store"],
        ]
    );
}

#[test]
fn unknown_input_lists_available_inputs() {
    let mut registry = lake::builtins::registry();
    registry.register("reads_missing", |ctx| ctx.input("stg_customers"));
    assert_eq!(
        registry.names(),
        vec!["dedupe_latest", "reads_missing", "resolve_entities", "union_all"]
    );

    let (_, a) = batch(vec![(
        "id",
        Arc::new(Int64Array::from(vec![1])) as ArrayRef,
    )]);
    let inputs = vec![("stg_orders", a.clone()), ("raw.shopify_orders", a)];
    let err = run(&registry, "reads_missing", inputs, json!({})).unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.contains(
            "has no input named `stg_customers`; available inputs: raw.shopify_orders, stg_orders"
        ),
        "{message}"
    );
}

#[test]
fn missing_parameters_are_reported() {
    let registry = lake::builtins::registry();
    let (_, a) = batch(vec![(
        "id",
        Arc::new(Int64Array::from(vec![1])) as ArrayRef,
    )]);
    let err = run(
        &registry,
        "dedupe_latest",
        vec![("a", a.clone()), ("b", a)],
        json!({"key": "id"}),
    )
    .unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains("set the parameter `input`"), "{message}");
    assert!(registry.get("no_such_function").is_none());
}

#[test]
fn sliced_batches_keep_their_offsets() {
    let schema = mixed_schema();
    let full = mixed_batch(1);
    let sliced = full.slice(1, 2);
    let df = record_batches_to_dataframe(&schema, std::slice::from_ref(&sliced)).unwrap();
    assert_eq!(df.height(), 2);
    let (_, out) = dataframe_to_record_batches(df).unwrap();
    assert_eq!(out, vec![sliced]);
}

#[test]
fn misaligned_chunks_are_realigned() {
    let (schema, first) = batch(vec![(
        "a",
        Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef,
    )]);
    let second = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![Arc::new(Int64Array::from(vec![3]))],
    )
    .unwrap();
    let mut df = record_batches_to_dataframe(&schema, &[first, second]).unwrap();
    // One column in two chunks, the other in one.
    df.with_column(Column::new("b".into(), ["x", "y", "z"]))
        .unwrap();

    let (schema, out) = dataframe_to_record_batches(df).unwrap();
    assert_eq!(column_names(&schema), vec!["a", "b"]);
    assert_eq!(
        sorted_rows(&out),
        vec![vec!["1", "x"], vec!["2", "y"], vec!["3", "z"]]
    );
}

#[test]
fn lists_and_narrow_types_are_imported() {
    use arrow::array::{Int8Array, ListArray};
    use arrow::datatypes::Int8Type;

    let small = ListArray::from_iter_primitive::<Int8Type, _, _>(vec![
        Some(vec![Some(1), None]),
        None,
        Some(vec![]),
    ]);
    let (schema, input) = batch(vec![
        (
            "tiny",
            Arc::new(Int8Array::from(vec![Some(-1), None, Some(7)])) as ArrayRef,
        ),
        ("small_list", Arc::new(small) as ArrayRef),
    ]);
    let df = record_batches_to_dataframe(&schema, &[input]).unwrap();
    let (schema, out) = dataframe_to_record_batches(df).unwrap();
    assert_eq!(schema.field(0).data_type(), &DataType::Int32);
    assert!(
        matches!(schema.field(1).data_type(), DataType::List(item) if item.data_type() == &DataType::Int32),
        "{schema:?}"
    );
    assert_eq!(
        sorted_rows(&out),
        vec![
            vec!["-1", "[1, null]"],
            vec!["7", "[]"],
            vec!["null", "null"]
        ]
    );
}

#[test]
fn unsupported_types_are_errors_not_panics() {
    use arrow::array::{StructArray, Time64MicrosecondArray};

    let (schema, input) = batch(vec![(
        "at",
        Arc::new(Time64MicrosecondArray::from(vec![1])) as ArrayRef,
    )]);
    let err = record_batches_to_dataframe(&schema, &[input]).unwrap_err();
    assert!(
        format!("{err:#}").contains("column `at` (Time64(µs)) cannot be passed to Polars"),
        "{err:#}"
    );

    let inner: ArrayRef = Arc::new(Int64Array::from(vec![1]));
    let nested = StructArray::from(vec![(
        Arc::new(Field::new("x", DataType::Int64, true)),
        inner,
    )]);
    let (schema, input) = batch(vec![("s", Arc::new(nested) as ArrayRef)]);
    let err = record_batches_to_dataframe(&schema, &[input]).unwrap_err();
    assert!(format!("{err:#}").contains("column `s`"), "{err:#}");
}
