#!/usr/bin/env python3
"""Stripe customers and HubSpot contacts for the demo, derived from the Shopify customers.

    python3 scripts/gen_demo_crm.py        # after scripts/gen_demo_data.py

Reads seeds/shopify/customers.ndjson and writes seeds/stripe/customers.ndjson and
seeds/hubspot/contacts.ndjson: about 60% of the shoppers are Stripe customers and half are
HubSpot contacts, typed differently (email case and spaces, phone formats, names
swapped or without accents), plus HubSpot-only leads. Each record keeps the Shopify id it
came from in scripts/expected_entities.json so the demo's entity resolution can be checked.
"""

import json
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEED = 20261130


def ndjson(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def variant_email(rng, email):
    if email is None:
        return None
    email = email.strip()
    local, domain = email.split("@")
    r = rng.random()
    if r < 0.3:
        return email.upper()
    if r < 0.4:
        return f" {local.capitalize()}@{domain} "
    return email.lower()


def variant_phone(rng, phone):
    if phone is None or rng.random() < 0.3:
        return None
    digits = "".join(c for c in phone if c.isdigit())
    return rng.choice([phone, "+" + digits, phone.replace(" ", "-")])


def main():
    rng = random.Random(SEED)
    shoppers = [json.loads(l) for l in (ROOT / "seeds/shopify/customers.ndjson").open(encoding="utf-8")]
    stripe, hubspot, truth = [], [], {}
    # Repeat signups (same email, typed differently) are the same person as the first one.
    person_of_email = {}
    for c in shoppers:
        if c["email"] is not None:
            person_of_email.setdefault(c["email"].strip().lower(), c["id"])
    for c in shoppers:
        first, last = (c["first_name"] or "").strip(), (c["last_name"] or "").strip()
        person = person_of_email[c["email"].strip().lower()] if c["email"] is not None else c["id"]
        truth[f"shopify:{c['id']}"] = person
        if rng.random() < 0.6:
            sid = f"cus_{rng.randrange(16**12):012x}"
            name = f"{first} {last}" if rng.random() < 0.95 else f"{last} {first}"
            stripe.append({
                "id": sid,
                "email": variant_email(rng, c["email"]),
                "name": name,
                "phone": variant_phone(rng, c["phone"]),
                "address_country": c["country"],
                "created": c["created_at"],
            })
            truth[f"stripe:{sid}"] = person
        if rng.random() < 0.5:
            hid = str(rng.randrange(10**9, 10**10))
            hubspot.append({
                "id": hid,
                "email": variant_email(rng, c["email"]),
                "firstname": first.upper() if rng.random() < 0.1 else first,
                "lastname": last,
                "phone": variant_phone(rng, c["phone"]),
                "lifecyclestage": rng.choice(["customer", "customer", "opportunity"]),
                "createdate": c["created_at"],
            })
            truth[f"hubspot:{hid}"] = person
    # Leads who never bought anything.
    for n in range(40):
        hid = str(rng.randrange(10**9, 10**10))
        first, last = rng.choice(["Ava", "Noah", "Mia", "Leo", "Ivy"]), rng.choice(["Stone", "Reyes", "Novak", "Berg"])
        hubspot.append({
            "id": hid,
            "email": f"{first}.{last}.lead{n}@example-leads.io".lower(),
            "firstname": first,
            "lastname": last,
            "phone": None,
            "lifecyclestage": "lead",
            "createdate": "2026-10-01T00:00:00Z",
        })
        truth[f"hubspot:{hid}"] = f"lead{n}"
    ndjson(ROOT / "seeds/stripe/customers.ndjson", stripe)
    ndjson(ROOT / "seeds/hubspot/contacts.ndjson", hubspot)
    (ROOT / "scripts/expected_entities.json").write_text(json.dumps(truth, indent=0, sort_keys=True) + "\n")
    counts_path = ROOT / "scripts/expected_counts.json"
    counts = json.loads(counts_path.read_text())
    counts.update({
        "raw.stripe_customers": len(stripe),
        "raw.hubspot_contacts": len(hubspot),
        "staging.stg_stripe_customers": len(stripe),
        "staging.stg_hubspot_contacts": len(hubspot),
        "semantic.entity_index": len(shoppers) + len(stripe) + len(hubspot),
    })
    counts_path.write_text(json.dumps(counts, indent=2) + "\n")
    print(f"stripe customers: {len(stripe)}, hubspot contacts: {len(hubspot)}")


if __name__ == "__main__":
    main()
