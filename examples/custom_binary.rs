//! A team's own `lake` binary: the stock command line, plus the team's Rust models.
//!
//! Build it with `cargo build --release --example custom_binary` (or copy this file into a
//! crate that depends on `lake`) and use it in place of `lake`. A model whose YAML names the
//! function `customer_rfm` and lists an `orders` input then runs `customer_rfm` below.

use anyhow::Result;
use lake::engine::rust_model::{Registry, RustModelContext};
use polars::prelude::*;

/// Recency, frequency and monetary value per customer, from an `orders` input with
/// `customer_id`, `order_ts` (a timestamp) and `total` columns.
///
/// Recency is the number of days from a customer's last order to the last order overall,
/// so a run over the same data always gives the same result. Param `min_orders` (default 1)
/// drops customers with fewer orders.
fn customer_rfm(ctx: RustModelContext) -> Result<LazyFrame> {
    let min_orders = ctx
        .param("min_orders")
        .and_then(|v| v.as_u64())
        .unwrap_or(1);
    let orders = ctx.input("orders")?;

    let per_customer = orders
        .with_column(col("order_ts").max().alias("as_of"))
        .group_by([col("customer_id")])
        .agg([
            col("order_ts").max().alias("last_order_ts"),
            len().alias("frequency"),
            col("total").sum().alias("monetary"),
            col("as_of").first(),
        ]);

    // Calendar days since the epoch, so recency is a whole number of days.
    let day = |column: &str| col(column).cast(DataType::Date).cast(DataType::Int32);
    Ok(per_customer
        .with_column((day("as_of") - day("last_order_ts")).alias("recency_days"))
        .filter(col("frequency").gt_eq(lit(min_orders)))
        .select([
            col("customer_id"),
            col("recency_days"),
            col("frequency"),
            col("monetary"),
            col("last_order_ts"),
        ]))
}

/// The built-in functions plus this team's.
pub fn registry() -> Registry {
    let mut registry = lake::builtins::registry();
    registry.register("customer_rfm", customer_rfm);
    registry
}

fn main() {
    std::process::exit(lake::cli::main_with_registry(registry()));
}
