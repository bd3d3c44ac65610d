#!/usr/bin/env bash
# The demo pipeline end to end, from the project root (README: Set up):
#   1. generate the first three days of a four-day run of Shopify, Stripe and HubSpot webhook
#      events into events/ (skipped when events/ already has them; the README's next step
#      adds the fourth day with --since 2026-11-04),
#   2. land them in the raw tables with `lake ingest` (each file is read once),
#   3. build every model and run its data tests (`lake build`),
#   4. print a few people of marts.customer_360 linked across the three sources.
# LAKE names the command that runs lake (default: a release build through cargo).
set -euo pipefail
cd "$(dirname "$0")/.."
read -r -a lake <<< "${LAKE:-cargo run --quiet --release --}"

if ! compgen -G "events/shopify_orders*.ndjson" > /dev/null; then
    "${lake[@]}" demo generate --customers 300 --days 4 --until 2026-11-04 --out events
fi
"${lake[@]}" ingest --all --once
"${lake[@]}" build
"${lake[@]}" sql "select name, email, shopify_customer_ids, stripe_customer_ids, hubspot_contact_ids, orders, lifetime_value
                  from marts.customer_360 where sources = 3 order by lifetime_value desc limit 5" --format table
