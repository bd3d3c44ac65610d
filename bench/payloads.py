#!/usr/bin/env python3
"""Seeded generator of realistic webhook payloads as NDJSON, in the shapes the providers send:

  shopify  Shopify `orders/create` bodies, from bench/orders.py (imported, not copied): nested
           customer and addresses, line items with price sets and tax lines; about 2.9 KB.
  stripe   Stripe `charge.succeeded` events: the event envelope (id, object "event",
           api_version, created, data.object, livemode, pending_webhooks, request, type) around
           a charge as API version 2024-06-20 renders it (billing_details, outcome,
           payment_method_details.card with checks and network_token, metadata,
           fraud_details, radar_options, ...); about 2.8 KB.
  hubspot  HubSpot contacts as the CRM v3 objects API returns them (the record a sink fetches
           when a `contact.creation` / `contact.propertyChange` webhook arrives, since those
           notifications carry only objectId, propertyName and propertyValue): id, a
           `properties` map whose values are all strings (or null), createdAt / updatedAt,
           archived, and `associations` to companies and deals; about 1 KB.
  mixed    the three interleaved at random, one file (as a catch-all landing table gets them).

Lines are written as `json.dumps` writes them (", " and ": " separators, non-ASCII escaped).
A share of the lines (1% by default) is cut short at a random byte, as a producer killed
mid-write leaves them: dead letters. With `--kind shopify` the output is byte for byte what
`bench/orders.py` writes for the same seed and share.

    python3 bench/payloads.py LINES OUT.ndjson [--kind shopify|stripe|hubspot|mixed]
                              [--malformed 0.01] [--seed 7]
"""

import argparse
import datetime
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import orders  # noqa: E402  (the Shopify generator)

# 2026-11-01T00:00:00Z; events fall in November 2026 like bench/orders.py's.
EPOCH = 1793491200
BRANDS = [("visa", "credit"), ("visa", "debit"), ("mastercard", "credit"), ("amex", "credit"), ("discover", "credit")]
B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
COMPANIES = ["Acme Corp", "Globex", "Initech", "Umbrella", "Hooli", "Stark Industries", "Wayne Enterprises", None]
TITLES = ["Head of Data", "Buyer", "Office Manager", "CTO", "Marketing Lead", None]
STAGES = ["subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer"]
SOURCES = ["ORGANIC_SEARCH", "DIRECT_TRAFFIC", "PAID_SEARCH", "EMAIL_MARKETING", "SOCIAL_MEDIA", "OFFLINE"]


def stripe_id(rng, prefix, n=24):
    """A Stripe-style id: prefix, underscore, base62 characters."""
    return prefix + "_" + "".join(rng.choice(B62) for _ in range(n))


def iso_millis(seconds, millis):
    """2026-11-05T14:30:00.123Z (HubSpot's timestamps)."""
    t = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{millis:03d}Z"


def stripe_charge_succeeded(rng, i):
    """A `charge.succeeded` event (API version 2024-06-20)."""
    first, last = rng.choice(orders.FIRST), rng.choice(orders.LAST)
    city, state, country, postal = rng.choice(orders.CITIES)
    email = f"{first.lower()}.{i}@example.com"
    amount = rng.choice([1299, 2450, 4999, 6500, 18900]) * rng.randint(1, 3)
    created = EPOCH + rng.randint(0, 29 * 86400)
    brand, funding = rng.choice(BRANDS)
    charge_id = stripe_id(rng, "ch")
    pi = "pi" + charge_id[2:]
    risk = rng.randint(0, 99)
    with_address = rng.random() < 0.7
    order_meta = rng.random() < 0.8
    charge = {
        "id": charge_id, "object": "charge", "amount": amount, "amount_captured": amount, "amount_refunded": 0,
        "application": None, "application_fee": None, "application_fee_amount": None,
        "balance_transaction": "txn" + charge_id[2:],
        "billing_details": {
            "address": {"city": city if with_address else None, "country": country,
                        "line1": f"{rng.randint(1, 999)} {rng.choice(['Main', 'Elm', 'Oak'])} Street" if with_address else None,
                        "line2": None, "postal_code": postal, "state": state if with_address else None},
            "email": email, "name": f"{first} {last}", "phone": None, "tax_id": None},
        "calculated_statement_descriptor": "ACME STORE", "captured": True, "created": created, "currency": rng.choice(["usd", "eur", "cad"]),
        "customer": stripe_id(rng, "cus", 14), "description": f"Order #{1000 + i}", "destination": None, "dispute": None,
        "disputed": False, "failure_balance_transaction": None, "failure_code": None, "failure_message": None,
        "fraud_details": {}, "invoice": None, "livemode": True,
        "metadata": {"order_id": str(820982911946154508 + i), "channel": rng.choice(["web", "pos", "app"])} if order_meta else {},
        "on_behalf_of": None, "order": None,
        "outcome": {"advice_code": None, "network_advice_code": None, "network_decline_code": None,
                    "network_status": "approved_by_network", "reason": None,
                    "risk_level": "normal" if risk < 65 else "elevated", "risk_score": risk,
                    "seller_message": "Payment complete.", "type": "authorized"},
        "paid": True, "payment_intent": pi, "payment_method": stripe_id(rng, "pm"),
        "payment_method_details": {
            "card": {"amount_authorized": amount, "authorization_code": f"{rng.randint(0, 999999):06d}", "brand": brand,
                     "checks": {"address_line1_check": "pass" if with_address else None,
                                "address_postal_code_check": "pass", "cvc_check": rng.choice(["pass", "pass", None])},
                     "country": country, "exp_month": rng.randint(1, 12), "exp_year": rng.randint(2027, 2032),
                     "extended_authorization": {"status": "disabled"},
                     "fingerprint": "".join(rng.choice(B62) for _ in range(16)), "funding": funding,
                     "incremental_authorization": {"status": "unavailable"}, "installments": None,
                     "last4": f"{rng.randint(0, 9999):04d}", "mandate": None,
                     "multicapture": {"status": "unavailable"}, "network": brand,
                     "network_token": {"used": False},
                     "overcapture": {"maximum_amount_capturable": amount, "status": "unavailable"},
                     "regulated_status": "unregulated", "three_d_secure": None, "wallet": None},
            "type": "card"},
        "radar_options": {}, "receipt_email": email, "receipt_number": None,
        "receipt_url": "https://pay.stripe.com/receipts/payment/" + "".join(rng.choice(B62) for _ in range(96)),
        "refunded": False, "review": None, "shipping": None, "source": None, "source_transfer": None,
        "statement_descriptor": None, "statement_descriptor_suffix": None, "status": "succeeded",
        "transfer_data": None, "transfer_group": None,
    }
    return {
        "id": stripe_id(rng, "evt"), "object": "event", "api_version": "2024-06-20", "created": created + 1,
        "data": {"object": charge}, "livemode": True, "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None}, "type": "charge.succeeded",
    }


def hubspot_contact(rng, i):
    """A contact as GET /crm/v3/objects/contacts/{id}?associations=companies,deals returns it."""
    first, last = rng.choice(orders.FIRST), rng.choice(orders.LAST)
    city, state, country, postal = rng.choice(orders.CITIES)
    contact_id = str(51 + i * 101)
    created = EPOCH + rng.randint(0, 29 * 86400)
    updated = created + rng.randint(0, 5 * 86400)
    created_iso = iso_millis(created, rng.randint(0, 999))
    updated_iso = iso_millis(updated, rng.randint(0, 999))
    company = rng.choice(COMPANIES)
    email = f"{first.lower()}.{i}@{company.lower().replace(' ', '') + '.com' if company else 'example.com'}"
    properties = {
        "address": f"{rng.randint(1, 999)} {rng.choice(['Main', 'Elm', 'Oak'])} Street", "city": city,
        "company": company, "country": country, "createdate": created_iso, "email": email, "firstname": first,
        "hs_analytics_num_page_views": str(rng.randint(0, 80)), "hs_analytics_source": rng.choice(SOURCES),
        "hs_email_domain": email.split("@")[1], "hs_is_unworked": rng.choice(["true", "false"]),
        "hs_lead_status": rng.choice(["NEW", "OPEN", "IN_PROGRESS", "CONNECTED", None]),
        "hs_object_id": contact_id, "hubspot_owner_id": str(rng.choice([31466021, 31466022, 31466023])),
        "jobtitle": rng.choice(TITLES), "lastmodifieddate": updated_iso, "lastname": last,
        "lifecyclestage": rng.choice(STAGES), "mobilephone": None,
        "phone": f"+1-555-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}", "state": state,
        "website": f"https://www.{company.lower().replace(' ', '')}.com" if company else None, "zip": postal,
    }
    contact = {"id": contact_id, "properties": properties, "createdAt": created_iso, "updatedAt": updated_iso,
               "archived": False}
    associations = {}
    if company:
        company_id = str(9800000000 + rng.randint(0, 99999))
        associations["companies"] = {"results": [{"id": company_id, "type": "contact_to_company"},
                                                 {"id": company_id, "type": "contact_to_company_unlabeled"}]}
    if rng.random() < 0.4:
        associations["deals"] = {"results": [{"id": str(13400000000 + rng.randint(0, 999999)), "type": "contact_to_deal"}
                                             for _ in range(rng.randint(1, 2))]}
    if associations:
        contact["associations"] = associations
    return contact


GENERATORS = {"shopify": orders.order, "stripe": stripe_charge_succeeded, "hubspot": hubspot_contact}


def lines(kind, n, malformed=0.01, seed=7):
    """The NDJSON lines (without newlines) of `n` payloads of `kind`."""
    rng = random.Random(seed)
    kinds = list(GENERATORS)
    for i in range(n):
        gen = GENERATORS[rng.choice(kinds) if kind == "mixed" else kind]
        line = json.dumps(gen(rng, i))
        if rng.random() < malformed:
            line = line[: rng.randint(1, len(line) - 1)]
        yield line


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lines", type=int)
    parser.add_argument("out")
    parser.add_argument("--kind", choices=[*GENERATORS, "mixed"], default="shopify")
    parser.add_argument("--malformed", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with open(args.out, "w") as f:
        for line in lines(args.kind, args.lines, args.malformed, args.seed):
            f.write(line + "\n")


if __name__ == "__main__":
    main()
