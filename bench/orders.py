#!/usr/bin/env python3
"""Seeded generator of realistic Shopify `orders/create` webhook payloads as NDJSON: nested
customer (with default address), 1-3 line items (1.8 on average) with price sets and tax lines, shipping and
billing addresses, shipping lines; about 2.9 KB per line, written as `json.dumps` writes them
(", " and ": " separators, non-ASCII escaped). A share of the lines (1% by default) is cut
short at a random byte, as a producer killed mid-write leaves them: dead letters for `lake`.

    python3 bench/orders.py LINES OUT.ndjson [--malformed 0.01] [--seed 7]
"""

import argparse
import json
import random

FIRST = ["Ann", "José", "Zoë", "Li", "Mohammed", "Olga", "Brigitte", "Kwame", "Søren", "Emily"]
LAST = ["Smith", "Núñez", "Müller", "Chen", "O'Brien", "Kowalski", "Dubois", "Okafor", "Larsen", "Brown"]
CITIES = [("Ottawa", "ON", "CA", "K2P 1L4"), ("Berlin", "BE", "DE", "10115"), ("Austin", "TX", "US", "78701"),
          ("Lyon", "ARA", "FR", "69002"), ("Oslo", "OS", "NO", "0150")]
PRODUCTS = [("Wool Socks", "Acme Knits", 1299), ("Trail Jacket", "North Peak", 18900), ("Coffee Beans 1kg", "Roastery",
            2450), ("Yoga Mat", "Zen Gear", 4999), ("Desk Lamp", "Lumen", 6500), ("Water Bottle", "Hydra", 1999)]


def money(cents):
    return f"{cents / 100:.2f}"


def price_set(cents, currency):
    return {"shop_money": {"amount": money(cents), "currency_code": currency}}


def address(rng, first, last):
    city, province, country, zip_code = rng.choice(CITIES)
    return {"first_name": first, "address1": f"{rng.randint(1, 999)} {rng.choice(['Main', 'Elm', 'Oak'])} Street",
            "phone": f"+1-555-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}", "city": city, "zip": zip_code,
            "province": province, "country": country, "last_name": last, "address2": None,
            "latitude": round(rng.uniform(-60, 60), 6), "name": f"{first} {last}", "country_code": country, "province_code": province}


def order(rng, i):
    first, last = rng.choice(FIRST), rng.choice(LAST)
    email = f"{first.lower()}.{i}@example.com"
    currency = rng.choice(["USD", "EUR", "CAD"])
    day, hour, minute = rng.randint(1, 28), rng.randint(0, 23), rng.randint(0, 59)
    created = f"2026-11-{day:02d}T{hour:02d}:{minute:02d}:00-05:00"
    items, subtotal = [], 0
    for n in range(rng.choice([1, 1, 2, 2, 3])):
        title, vendor, cents = rng.choice(PRODUCTS)
        qty = rng.randint(1, 3)
        subtotal += cents * qty
        tax = cents * qty * 13 // 100
        items.append({"id": 866550311766439020 + i * 10 + n, "title": title,
                      "quantity": qty, "sku": f"SKU-{rng.randint(1000, 9999)}", "variant_title": rng.choice(["S", "M", "L", None]),
                      "vendor": vendor, "product_id": 632910392 + n,
                      "requires_shipping": True, "taxable": True, "gift_card": False,
                      "properties": [], "grams": rng.randint(100, 2000),
                      "price": money(cents), "total_discount": "0.00", "fulfillment_status": None,
                      "price_set": price_set(cents, currency),
                      "tax_lines": [{"title": "HST", "price": money(tax), "rate": 0.13}]})
    tax = subtotal * 13 // 100
    shipping = rng.choice([0, 999, 1499])
    bill = address(rng, first, last)
    return {
        "id": 820982911946154508 + i, "admin_graphql_api_id": f"gid://shopify/Order/{820982911946154508 + i}",
        "app_id": 580111, "browser_ip": f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        "buyer_accepts_marketing": rng.random() < 0.4, "cancel_reason": None, "cancelled_at": None,
        "confirmed": True, "contact_email": email, "created_at": created, "currency": currency,
        "customer_locale": rng.choice(["en", "fr", "de"]), "email": email,
        "financial_status": rng.choice(["paid", "pending", "authorized"]), "fulfillment_status": None,
        "name": f"#{1000 + i}", "note": rng.choice([None, "Leave at the door", "Gift wrap, please"]),
        "number": i + 1, "order_number": 1000 + i, "phone": None, "presentment_currency": currency,
        "processed_at": created, "source_name": "web", "subtotal_price": money(subtotal),
        "tags": rng.choice(["", "vip", "wholesale, repeat"]), "taxes_included": False, "test": False,
        "token": f"{rng.getrandbits(128):032x}", "total_discounts": "0.00",
        "total_line_items_price": money(subtotal), "total_price": money(subtotal + tax + shipping),
        "total_tax": money(tax), "total_weight": rng.randint(100, 6000), "updated_at": created,
        "billing_address": bill, "shipping_address": bill,
        "customer": {"id": 115310627314723954 + i % 5000, "email": email, "accepts_marketing": False,
                     "created_at": "2026-01-05T10:00:00-05:00", "updated_at": created, "first_name": first,
                     "last_name": last, "state": "enabled", "note": None, "verified_email": True, "tax_exempt": False,
                     "phone": None, "tags": "", "currency": currency,
                     "default_address": {k: bill[k] for k in ("address1", "city", "zip", "country_code")}},
        "line_items": items,
        "shipping_lines": [{"id": 271878346596884015 + i, "code": "Standard", "price": money(shipping),
                            "source": "shopify", "title": "Standard Shipping"}],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lines", type=int)
    parser.add_argument("out")
    parser.add_argument("--malformed", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with open(args.out, "w") as f:
        for i in range(args.lines):
            line = json.dumps(order(rng, i))
            if rng.random() < args.malformed:
                line = line[: rng.randint(1, len(line) - 1)]
            f.write(line + "\n")


if __name__ == "__main__":
    main()
