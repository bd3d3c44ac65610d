#!/usr/bin/env python3
"""Generate the demo project's Shopify-like seed data, deterministically.

    python3 scripts/gen_demo_data.py            # from the project root

Writes (always the same bytes for the same SEED):

  seeds/shopify/customers.ndjson      ~300 customers
  seeds/shopify/orders.ndjson         ~2000 orders, 2026-10-01 .. 2026-10-31
  seeds/shopify/order_lines.ndjson    ~5000 order lines
  scripts/demo_batches/orders_2026-11-01.ndjson       a second day of orders, for the
  scripts/demo_batches/order_lines_2026-11-01.ndjson  incremental demo (copy into seeds/shopify/)
  scripts/expected_counts.json                        row counts the demo must produce
  scripts/demo_batches/expected_counts_after_batch.json  the same after the batch is added

The expected counts are computed here in Python with the same logic as the SQL models,
so a test can compare `select count(*) from <table>` with them.

Deliberate quirks in the raw data, which the staging models clean up:
  * some emails have mixed case or surrounding whitespace, and a few are null;
  * some customers signed up twice with the same email (differently cased): the
    `customers_deduped` model keeps the most recently updated record per email;
  * some first/last names have stray whitespace;
  * some customers have no orders at all.

Standard library only.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

SEED = 20261001
ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds" / "shopify"
BATCHES = ROOT / "scripts" / "demo_batches"

N_CUSTOMERS = 300
N_DUPLICATE_SIGNUPS = 10  # customers whose email repeats an earlier customer's
N_NULL_EMAILS = 4
N_NO_ORDER_CUSTOMERS = 25
N_ORDERS = 2000
N_BATCH_ORDERS = 200

FIRST_ORDER_ID = 7_000_000_001
FIRST_ORDER_NUMBER = 1001
FIRST_LINE_ID = 90_000_000_001

MONTH_START = datetime(2026, 10, 1, tzinfo=timezone.utc)
MONTH_END = datetime(2026, 11, 1, tzinfo=timezone.utc)  # exclusive
BATCH_DAY = datetime(2026, 11, 1, tzinfo=timezone.utc)

CURRENCY = "USD"
STATUSES = ["paid", "pending", "refunded"]
STATUS_WEIGHTS = [85, 6, 9]

# country -> (weight, tax rate, phone prefix)
COUNTRIES = {
    "US": (60, Decimal("0.07"), "+1"),
    "CA": (15, Decimal("0.13"), "+1"),
    "GB": (12, Decimal("0.20"), "+44"),
    "AU": (8, Decimal("0.10"), "+61"),
    "DE": (5, Decimal("0.19"), "+49"),
}

FIRST_NAMES = [
    "Olivia", "Liam", "Emma", "Noah", "Ava", "Oliver", "Sophia", "Elijah", "Isabella",
    "James", "Mia", "William", "Amelia", "Benjamin", "Harper", "Lucas", "Evelyn", "Henry",
    "Abigail", "Theodore", "Emily", "Jack", "Ella", "Levi", "Chloe", "Alexander", "Grace",
    "Mateo", "Zoe", "Daniel", "Nora", "Samuel", "Lily", "Leo", "Hannah", "Owen", "Aria",
    "Ethan", "Layla", "Sebastian", "Priya", "Arjun", "Mei", "Kenji", "Fatima", "Omar",
    "Ingrid", "Lukas", "Sofia", "Diego",
]
LAST_NAMES = [
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis",
    "Rodriguez", "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson",
    "Thomas", "Taylor", "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White",
    "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson", "Walker", "Young",
    "Allen", "King", "Wright", "Scott", "Nguyen", "Hill", "Patel", "Kim", "Müller",
    "Schmidt", "O'Brien", "MacDonald", "Singh", "Tanaka", "Chen", "Silva",
]
EMAIL_DOMAINS = ["example.com", "mail.example.org", "shopper.example.net", "inbox.example.io"]

# (sku, title, price)
PRODUCTS = [
    ("TEE-BLK-S", "Classic Tee - Black / S", "24.00"),
    ("TEE-BLK-M", "Classic Tee - Black / M", "24.00"),
    ("TEE-BLK-L", "Classic Tee - Black / L", "24.00"),
    ("TEE-WHT-M", "Classic Tee - White / M", "24.00"),
    ("TEE-WHT-L", "Classic Tee - White / L", "24.00"),
    ("HOOD-GRY-M", "Heavyweight Hoodie - Grey / M", "68.00"),
    ("HOOD-GRY-L", "Heavyweight Hoodie - Grey / L", "68.00"),
    ("HOOD-NVY-M", "Heavyweight Hoodie - Navy / M", "68.00"),
    ("CAP-OLV", "Canvas Cap - Olive", "29.50"),
    ("CAP-BLK", "Canvas Cap - Black", "29.50"),
    ("SOCK-3PK", "Merino Socks 3-Pack", "32.00"),
    ("BEANIE-RST", "Ribbed Beanie - Rust", "27.00"),
    ("TOTE-NAT", "Organic Tote Bag", "19.99"),
    ("MUG-12OZ", "Stoneware Mug 12oz", "18.50"),
    ("MUG-16OZ", "Stoneware Mug 16oz", "21.00"),
    ("BTL-750", "Insulated Bottle 750ml", "34.95"),
    ("BTL-500", "Insulated Bottle 500ml", "29.95"),
    ("NOTE-A5-DOT", "Notebook A5 - Dot Grid", "14.00"),
    ("NOTE-A5-LIN", "Notebook A5 - Lined", "14.00"),
    ("PEN-BRS", "Brass Pen", "45.00"),
    ("CANDLE-CED", "Soy Candle - Cedar", "26.00"),
    ("CANDLE-FIG", "Soy Candle - Fig", "26.00"),
    ("BLANKET-WOOL", "Wool Throw Blanket", "129.00"),
    ("PILLOW-LIN", "Linen Pillow Cover", "39.00"),
    ("APRON-DNM", "Denim Apron", "54.00"),
    ("KNIFE-CHEF", "Chef's Knife 8in", "89.00"),
    ("BOARD-WAL", "Walnut Cutting Board", "74.00"),
    ("COFFEE-ETH", "Coffee Beans - Ethiopia 250g", "16.50"),
    ("COFFEE-COL", "Coffee Beans - Colombia 250g", "15.50"),
    ("TEA-SENCHA", "Loose Leaf Sencha 100g", "12.75"),
    ("DRIP-KIT", "Pour-Over Drip Kit", "58.00"),
    ("BACKPACK-20L", "Rolltop Backpack 20L", "149.00"),
    ("WALLET-LTH", "Leather Card Wallet", "42.00"),
    ("UMBRELLA-CMP", "Compact Umbrella", "36.00"),
    ("GIFT-25", "Gift Card $25", "25.00"),
    ("GIFT-100", "Gift Card $100", "100.00"),
    ("STICKER-PK", "Sticker Pack", "6.00"),
    ("POSTER-A2", "Art Print A2", "38.00"),
    ("PLANTER-SM", "Ceramic Planter - Small", "22.00"),
    ("PLANTER-LG", "Ceramic Planter - Large", "48.00"),
]

CENT = Decimal("0.01")


def money(x: Decimal) -> Decimal:
    return x.quantize(CENT, rounding=ROUND_HALF_UP)


def ts(dt: datetime) -> str:
    """ISO-8601, UTC, seconds precision, always with a trailing Z."""
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def ndjson_line(record: dict) -> str:
    """One JSON object; Decimals are written as JSON numbers with exactly 2 decimals."""
    parts = []
    for key, value in record.items():
        if isinstance(value, Decimal):
            text = f"{money(value):.2f}"
        else:
            text = json.dumps(value, ensure_ascii=False)
        parts.append(f"{json.dumps(key)}: {text}")
    return "{" + ", ".join(parts) + "}"


def write_ndjson(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for r in records:
            f.write(ndjson_line(r) + "\n")


def random_ts(rng: random.Random, start: datetime, end: datetime) -> datetime:
    """Uniform over [start, end), whole seconds."""
    span = int((end - start).total_seconds())
    return start + timedelta(seconds=rng.randrange(span))


def messy_email(rng: random.Random, email: str) -> str:
    """The same address as a shopper might type it: different case and/or stray spaces."""
    local, domain = email.split("@")
    variant = rng.choice(["title", "upper", "space", "both"])
    if variant == "title":
        return local.title() + "@" + domain
    if variant == "upper":
        return email.upper()
    if variant == "space":
        return " " + email + " "
    return "  " + local.capitalize() + "@" + domain.upper() + " "


# ---------------------------------------------------------------------------------------
# Customers
# ---------------------------------------------------------------------------------------


def gen_customers(rng: random.Random) -> list[dict]:
    countries = list(COUNTRIES)
    weights = [COUNTRIES[c][0] for c in countries]
    customers: list[dict] = []

    # Which ids are repeat signups of an earlier customer, and which have a null email.
    repeat_ids = set(rng.sample(range(60, N_CUSTOMERS + 1), N_DUPLICATE_SIGNUPS))
    null_email_ids = set(rng.sample(sorted(set(range(2, N_CUSTOMERS + 1)) - repeat_ids), N_NULL_EMAILS))

    for cid in range(1, N_CUSTOMERS + 1):
        created = random_ts(rng, datetime(2024, 1, 1, tzinfo=timezone.utc), datetime(2026, 9, 20, tzinfo=timezone.utc))
        if cid in repeat_ids:
            # Same person signs up again later with the same address typed differently.
            candidates = [c for c in customers if c["email"] is not None and c["_clean"] not in {x["_clean"] for x in customers if x["id"] in repeat_ids}]
            orig = rng.choice(candidates)
            first, last, country, clean = orig["_first"], orig["_last"], orig["country"], orig["_clean"]
            created = max(created, datetime.fromisoformat(orig["created_at"].replace("Z", "+00:00")) + timedelta(days=rng.randint(5, 200)))
            created = min(created, datetime(2026, 9, 25, tzinfo=timezone.utc))
            email = messy_email(rng, clean)
        else:
            first = rng.choice(FIRST_NAMES)
            last = rng.choice(LAST_NAMES)
            country = rng.choices(countries, weights)[0]
            local = f"{first}.{last}".lower().replace("'", "").replace("ü", "ue")
            clean = f"{local}{cid}@{rng.choice(EMAIL_DOMAINS)}"
            r = rng.random()
            if r < 0.08:
                email = messy_email(rng, clean)
            else:
                email = clean
        if cid in null_email_ids:
            email = None
            clean = None

        # Updated some time after creation, but never after the end of October.
        updated = created + timedelta(seconds=rng.randrange(0, 400 * 86400))
        updated = min(updated, MONTH_END - timedelta(seconds=rng.randrange(1, 86400 * 20)))
        updated = max(updated, created)

        phone = None
        if rng.random() > 0.2:
            prefix = COUNTRIES[country][2]
            phone = f"{prefix} {rng.randint(200, 989)} {rng.randint(100, 999)} {rng.randint(1000, 9999)}"

        first_out = first
        last_out = last
        if rng.random() < 0.06:
            first_out = " " + first
        if rng.random() < 0.04:
            last_out = last + "  "

        customers.append({
            "id": cid,
            "email": email,
            "first_name": first_out,
            "last_name": last_out,
            "phone": phone,
            "country": country,
            "created_at": ts(created),
            "updated_at": ts(updated),
            "_first": first,
            "_last": last,
            "_clean": clean,
        })

    # The latest record per normalized email must be unambiguous (no ties on updated_at).
    by_email = defaultdict(list)
    for c in customers:
        if c["_clean"] is not None:
            by_email[c["_clean"]].append(c["updated_at"])
    for email, stamps in by_email.items():
        assert len(stamps) == len(set(stamps)), f"tie on updated_at for {email}"
    return customers


def public(record: dict) -> dict:
    return {k: v for k, v in record.items() if not k.startswith("_")}


# ---------------------------------------------------------------------------------------
# Orders and order lines
# ---------------------------------------------------------------------------------------


def gen_orders(
    rng: random.Random,
    customers: list[dict],
    buyers: list[dict],
    buyer_weights: list[float],
    n: int,
    first_order_id: int,
    first_order_number: int,
    first_line_id: int,
    day_start: datetime,
    day_end: datetime,
) -> tuple[list[dict], list[dict]]:
    orders, lines = [], []
    line_id = first_line_id
    stamps = sorted(random_ts(rng, day_start, day_end) for _ in range(n))
    for i, created in enumerate(stamps):
        cust = rng.choices(buyers, buyer_weights)[0]
        n_lines = rng.choices([1, 2, 3, 4, 5], [22, 30, 26, 14, 8])[0]
        products = rng.sample(PRODUCTS, n_lines)
        subtotal = Decimal("0")
        order_id = first_order_id + i
        for sku, title, price in products:
            qty = rng.choices([1, 2, 3, 4], [80, 15, 4, 1])[0]
            price_d = Decimal(price)
            subtotal += qty * price_d
            lines.append({
                "id": line_id,
                "order_id": order_id,
                "sku": sku,
                "product_title": title,
                "quantity": qty,
                "price": price_d,
            })
            line_id += 1
        subtotal = money(subtotal)
        tax = money(subtotal * COUNTRIES[cust["country"]][1])
        total = subtotal + tax
        status = rng.choices(STATUSES, STATUS_WEIGHTS)[0]
        if status == "refunded":
            updated = created + timedelta(seconds=rng.randrange(86400, 6 * 86400))
        elif status == "paid":
            updated = created + timedelta(seconds=rng.randrange(5, 2 * 3600))
        else:
            updated = created + timedelta(seconds=rng.randrange(0, 600))
        updated = min(updated, day_end - timedelta(seconds=1))
        orders.append({
            "id": order_id,
            "customer_id": cust["id"],
            "order_number": first_order_number + i,
            "financial_status": status,
            "currency": CURRENCY,
            "subtotal_price": subtotal,
            "total_tax": tax,
            "total_price": total,
            "created_at": ts(created),
            "updated_at": ts(updated),
        })
    return orders, lines


# ---------------------------------------------------------------------------------------
# Expected results, computed like the SQL models do
# ---------------------------------------------------------------------------------------


def expected_counts(customers: list[dict], orders: list[dict], lines: list[dict]) -> dict:
    # staging
    stg_customers = customers
    stg_orders = orders
    stg_order_lines = lines
    paid = [o for o in stg_orders if o["financial_status"] == "paid"]
    paid_ids = {o["id"] for o in paid}

    # semantic.customers_deduped: one row per lower(trim(email)); null emails form one group
    # (as in Polars' unique/group_by), so they collapse to a single row.
    dedupe_keys = {c["email"].strip().lower() if c["email"] is not None else None for c in stg_customers}

    # analytics
    order_count = defaultdict(int)
    for o in stg_orders:
        order_count[o["customer_id"]] += 1
    paid_total = defaultdict(Decimal)
    for o in paid:
        paid_total[o["customer_id"]] += o["total_price"]
    customer_orders = [
        {"customer_id": c["id"], "order_count": order_count.get(c["id"], 0), "ltv": paid_total.get(c["id"], Decimal(0))}
        for c in stg_customers
    ]
    days = {o["created_at"][:10] for o in stg_orders if o["currency"] == CURRENCY}
    skus = {l["sku"] for l in stg_order_lines if l["order_id"] in paid_ids}

    # marts
    mart_ltv = [c for c in customer_orders if c["order_count"] > 0]
    months = {d[:7] for d in days}

    return {
        "raw.shopify_customers": len(customers),
        "raw.shopify_orders": len(orders),
        "raw.shopify_order_lines": len(lines),
        "staging.stg_customers": len(stg_customers),
        "staging.stg_orders": len(stg_orders),
        "staging.stg_order_lines": len(stg_order_lines),
        "semantic.customers_deduped": len(dedupe_keys),
        "analytics.customer_orders": len(customer_orders),
        "analytics.daily_revenue": len(days),
        "analytics.product_sales": len(skus),
        "marts.mart_customer_ltv": len(mart_ltv),
        "marts.mart_monthly_sales": len(months),
    }


def ltv_tiers(customers, orders) -> dict:
    paid_total = defaultdict(Decimal)
    count = defaultdict(int)
    for o in orders:
        count[o["customer_id"]] += 1
        if o["financial_status"] == "paid":
            paid_total[o["customer_id"]] += o["total_price"]
    tiers = defaultdict(int)
    for c in customers:
        if count.get(c["id"], 0) == 0:
            continue
        v = paid_total.get(c["id"], Decimal(0))
        tiers["gold" if v >= 1000 else "silver" if v >= 300 else "bronze"] += 1
    return dict(sorted(tiers.items()))


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def main() -> None:
    rng = random.Random(SEED)

    customers = gen_customers(rng)

    # Some customers never order; the rest order with skewed frequency (a few regulars).
    no_order = set(rng.sample(range(1, N_CUSTOMERS + 1), N_NO_ORDER_CUSTOMERS))
    buyers = [c for c in customers if c["id"] not in no_order]
    buyer_weights = [rng.lognormvariate(0.0, 1.4) for _ in buyers]

    orders, lines = gen_orders(
        rng, customers, buyers, buyer_weights, N_ORDERS,
        FIRST_ORDER_ID, FIRST_ORDER_NUMBER, FIRST_LINE_ID, MONTH_START, MONTH_END,
    )
    batch_orders, batch_lines = gen_orders(
        rng, customers, buyers, buyer_weights, N_BATCH_ORDERS,
        FIRST_ORDER_ID + len(orders), FIRST_ORDER_NUMBER + len(orders), FIRST_LINE_ID + len(lines),
        BATCH_DAY, BATCH_DAY + timedelta(days=1),
    )

    # The incremental demo relies on every batch order being strictly newer than the
    # watermark left by the October data.
    assert max(o["updated_at"] for o in orders) < min(o["updated_at"] for o in batch_orders)
    assert all(o["created_at"] <= o["updated_at"] for o in orders + batch_orders)
    ids = {c["id"] for c in customers}
    assert all(o["customer_id"] in ids for o in orders + batch_orders)

    write_ndjson(SEEDS / "customers.ndjson", [public(c) for c in customers])
    write_ndjson(SEEDS / "orders.ndjson", orders)
    write_ndjson(SEEDS / "order_lines.ndjson", lines)
    write_ndjson(BATCHES / "orders_2026-11-01.ndjson", batch_orders)
    write_ndjson(BATCHES / "order_lines_2026-11-01.ndjson", batch_lines)

    counts = expected_counts(customers, orders, lines)
    after = expected_counts(customers, orders + batch_orders, lines + batch_lines)
    write_json(ROOT / "scripts" / "expected_counts.json", counts)
    write_json(BATCHES / "expected_counts_after_batch.json", after)

    print(f"customers:                {len(customers)}")
    print(f"orders:                   {len(orders)}")
    print(f"order lines:              {len(lines)}")
    print(f"batch orders (2026-11-01): {len(batch_orders)}")
    print(f"batch order lines:        {len(batch_lines)}")
    print(f"customers without orders: {sum(1 for c in customers if c['id'] in no_order)}")
    print(f"ltv tiers:                {ltv_tiers(customers, orders)}")
    print("expected counts:")
    for table, n in counts.items():
        print(f"  {table:30} {n}")


if __name__ == "__main__":
    main()
