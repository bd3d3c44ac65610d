#!/usr/bin/env python3
"""Synthetic customers for entity-resolution tests and benchmarks, with known truth.

People live in households (some share a last name, address, postcode and a home phone) and
appear as records in Shopify, Stripe and HubSpot, with the mess real sources have: emails in
other case, with +tags, Gmail dots or googlemail.com, or missing; phones in national and
international formats, shared family phones and placeholder numbers; names with typos,
swapped first/last names, accents dropped, titles and odd case; dates in three spellings;
postcodes with and without spaces.

    python3 scripts/gen_customers.py --people 100000 --seed 7 --out customers.csv

Columns: record_id, source, true_id, first_name, last_name, email, phone, dob, postcode,
address. `true_id` is the person; every other column is what a source would hold. The same
seed always gives the same file.
"""

import argparse
import csv
import random
import sys

FIRST = """James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara
Richard Susan Joseph Jessica Thomas Sarah Charles Karen Christopher Lisa Daniel Nancy Matthew
Betty Anthony Margaret Mark Sandra Donald Ashley Steven Kimberly Paul Emily Andrew Donna Joshua
Michelle Kenneth Carol Kevin Amanda Brian Melissa George Deborah Timothy Stephanie Ronald Rebecca
Edward Sharon Jason Laura Jeffrey Cynthia Ryan Kathleen Jacob Amy Gary Angela Nicholas Shirley
Eric Anna Jonathan Brenda Stephen Pamela Larry Emma Justin Nicole Scott Helen Brandon Samantha
Benjamin Katherine Samuel Christine Gregory Debra Alexander Rachel Frank Carolyn Patrick Janet
Raymond Catherine Jack Maria Dennis Heather Jerry Diane Tyler Ruth Aaron Julie José Zoë Renée
Søren Björn Chloé Mónica Łukasz François Ingrid Yusuf Aisha Mateo Sofía Hiroshi Yuki Priya Arjun
Olamide Chidi Fatima Omar Leila Dmitri Svetlana Giulia Lorenzo Astrid Henrik Siobhan Declan
Niamh Ciarán Tomasz Agnieszka Kwame Ama Wei Mei Hamza Noor Ivan Olga Pedro Lucía Elif Emre""".split()

LAST_REAL = """Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez
Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris
Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores
Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Müller Schmidt Schneider
Fischer Weber Meyer Wagner Becker Schulz Hoffmann O'Brien O'Connor McCarthy Murphy Kelly Byrne
Nowak Kowalski Wiśniewski Dubois Lefèvre García Fernández Núñez Rossi Russo Ferrari Esposito
Bianchi Jensen Nielsen Hansen Andersen Larsen Johansson Eriksson Lindqvist Tanaka Suzuki Takahashi
Patel Sharma Gupta Okafor Adeyemi Mensah Kim Park Chen Wang Zhang Ivanov Petrov Yilmaz Kaya""".split()

SYLLABLES = """ba be bo da de di do fa fe fo ga ge go ha he ho ja ka ke ki ko la le li lo ma me mi mo
na ne ni no pa pe po ra re ri ro sa se si so ta te ti to va ve vi vo wa we za zo""".split()
ENDINGS = ["n", "r", "s", "l", "t", "m", "rd", "nd", "ck", "son", "berg", "stein", "wood", "field", "ley", "ton"]

EMAIL_DOMAINS = ["gmail.com"] * 5 + ["yahoo.com", "outlook.com", "hotmail.com", "icloud.com",
                                     "proton.me", "aol.com", "web.de", "gmx.de", "btinternet.com"]
PLUS_TAG_DOMAINS = {"gmail.com", "outlook.com", "hotmail.com", "icloud.com", "proton.me"}
US_AREA = [201, 202, 206, 212, 213, 214, 215, 303, 305, 310, 312, 404, 408, 415, 503, 512, 602,
           617, 646, 702, 713, 718, 773, 808, 917]
GB_LETTERS = "ABCDEFGHJKLMNPRSTUWY"
STREETS = ["Main", "Oak", "Pine", "Maple", "Cedar", "Elm", "Washington", "Lake", "Hill", "Park",
           "Church", "High", "Station", "Mill", "Bahnhof", "Linden", "Garden", "River", "Forest"]
STREET_KINDS = [("Street", "St."), ("Avenue", "Ave"), ("Road", "Rd"), ("Lane", "Ln"), ("Drive", "Dr.")]
TITLES = ["Dr. ", "Mr ", "Mrs. ", "Ms "]


def make_last_names(rng, count):
    names = set(LAST_REAL)
    while len(names) < count:
        parts = [rng.choice(SYLLABLES) for _ in range(rng.choice([2, 2, 3]))]
        names.add(("".join(parts) + rng.choice(ENDINGS)).capitalize())
    return sorted(names)


def gmail_key(email):
    local, domain = email.split("@")
    if domain == "gmail.com":
        local = local.replace(".", "")
    return f"{local}@{domain}"


class Person:
    __slots__ = ("pid", "first", "last", "email", "mobile", "home", "dob", "country", "postcode", "address")


def us_phone(rng):
    while True:
        exchange = rng.randint(200, 999)
        if exchange % 100 != 11 and exchange != 555:
            return (1, f"{rng.choice(US_AREA)}{exchange}{rng.randint(0, 9999):04d}")


def gb_phone(rng):
    return (44, f"7{rng.randint(4, 9)}{rng.randint(0, 99999999):08d}")


def de_phone(rng):
    return (49, f"{rng.choice([151, 152, 157, 176])}{rng.randint(10000000, 99999999)}")


def phone_for(rng, country):
    return {"US": us_phone, "GB": gb_phone, "DE": de_phone}[country](rng)


def postcode_for(rng, country):
    if country == "US":
        return f"{rng.randint(1000, 99999):05d}"
    if country == "DE":
        return f"{rng.randint(1067, 99998):05d}"
    outward = f"{rng.choice(GB_LETTERS)}{rng.choice(GB_LETTERS)}{rng.randint(1, 99)}"
    inward = f"{rng.randint(0, 9)}{rng.choice(GB_LETTERS)}{rng.choice(GB_LETTERS)}"
    return f"{outward} {inward}"


def make_people(rng, count):
    lasts = make_last_names(rng, 1600)
    people = []
    used_emails = set()
    pid = 0
    while len(people) < count:
        country = rng.choices(["US", "GB", "DE"], weights=[60, 25, 15])[0]
        size = 1 if rng.random() < 0.85 else rng.randint(2, 4)
        last = rng.choice(lasts)
        postcode = postcode_for(rng, country)
        kind = rng.choice(STREET_KINDS)
        address = (f"{rng.randint(1, 999)} {rng.choice(STREETS)} {kind[0]}", kind)
        home = phone_for(rng, country)
        initials = set()
        for _ in range(min(size, count - len(people))):
            p = Person()
            p.pid = f"P{pid:07d}"
            pid += 1
            # Household members have first names that start differently.
            first = rng.choice(FIRST)
            while first[0] in initials:
                first = rng.choice(FIRST)
            initials.add(first[0])
            p.first, p.last, p.country, p.postcode, p.address = first, last, country, postcode, address
            p.home = home if size > 1 else None
            p.mobile = phone_for(rng, country) if rng.random() < 0.75 else None
            if p.mobile is None and p.home is None:
                p.home = phone_for(rng, country) if rng.random() < 0.5 else None
            p.dob = (rng.randint(1940, 2006), rng.randint(1, 12), rng.randint(1, 28))
            p.email = None
            if rng.random() < 0.85:
                domain = rng.choice(EMAIL_DOMAINS)
                base = ascii_fold(f"{first}.{last}".lower()).replace("'", "")
                style = rng.random()
                if style < 0.4:
                    local = base
                elif style < 0.7:
                    local = base.replace(".", "") + str(rng.randint(1, 99))
                else:
                    local = f"{base[0]}.{base.split('.', 1)[1]}{rng.randint(1, 999)}"
                email = f"{local}@{domain}"
                while gmail_key(email) in used_emails:
                    email = f"{local}{rng.randint(100, 9999)}@{domain}"
                used_emails.add(gmail_key(email))
                p.email = email
            people.append(p)
    return people


FOLD = str.maketrans("éèêëáàâäãíìîïóòôöõúùûüñçøåæœßšžłńśćźżğı", "eeeeaaaaaiiiiooooouuuuncoaaosszlnsczzgi")


def ascii_fold(s):
    return s.translate(FOLD)


def typo(rng, s):
    if len(s) < 5:
        return s
    i = rng.randint(2, len(s) - 2)
    kind = rng.random()
    if kind < 0.3:
        return s[:i] + s[i + 1] + s[i] + s[i + 2:]
    if kind < 0.6:
        return s[:i] + s[i + 1:]
    if kind < 0.8:
        return s[:i] + rng.choice("aeiourstln") + s[i + 1:]
    return s[:i] + s[i] + s[i:]


def email_variant(rng, email):
    local, domain = email.split("@")
    r = rng.random()
    if domain == "gmail.com" and r < 0.15:
        domain = "googlemail.com"
    if domain in ("gmail.com", "googlemail.com") and rng.random() < 0.3:
        local = local.replace(".", "") if "." in local else local[:3] + "." + local[3:]
    if domain in PLUS_TAG_DOMAINS and rng.random() < 0.15:
        local = f"{local}+{rng.choice(['shop', 'news', 'stripe', 'promo'])}"
    out = f"{local}@{domain}"
    r = rng.random()
    if r < 0.2:
        out = out.upper() if rng.random() < 0.3 else out.capitalize()
    elif r < 0.25:
        out = f" {out} "
    return out


def phone_variant(rng, phone):
    cc, national = phone
    r = rng.random()
    if cc == 1:
        a, b, c = national[:3], national[3:6], national[6:]
        forms = [f"({a}) {b}-{c}", f"{a}-{b}-{c}", f"{a}.{b}.{c}", f"+1 {a} {b} {c}", f"1{national}", national]
    elif cc == 44:
        forms = [f"0{national[:4]} {national[4:]}", f"+44 {national[:4]} {national[4:]}", f"0044{national}", f"0{national}"]
    else:
        forms = [f"0{national[:3]} {national[3:]}", f"+49 {national[:3]} {national[3:]}", f"0049{national}", f"0{national}"]
    form = forms[int(r * len(forms))]
    # Numbers without a country code are national numbers of the person's country; the
    # resolver reads them with its default region, so non-US national forms get the +code.
    if cc != 1 and form.startswith("0") and not form.startswith("00"):
        form = f"+{cc} " + form[1:]
    return form


def name_variant(rng, name):
    r = rng.random()
    if r < 0.5:
        name = ascii_fold(name) if rng.random() < 0.5 else name
    r = rng.random()
    if r < 0.08:
        name = name.upper()
    elif r < 0.16:
        name = name.lower()
    return name


def dob_variant(rng, dob, country):
    y, m, d = dob
    if country == "US" and rng.random() < 0.5:
        return f"{m:02d}/{d:02d}/{y}"
    if country == "DE" and rng.random() < 0.5:
        return f"{d:02d}.{m:02d}.{y}"
    return f"{y}-{m:02d}-{d:02d}"


def postcode_variant(rng, postcode):
    r = rng.random()
    if " " in postcode and r < 0.3:
        return postcode.replace(" ", "")
    if r < 0.4:
        return postcode.lower()
    if postcode.isdigit() and len(postcode) == 5 and r < 0.5:
        return f"{postcode}-{rng.randint(0, 9999):04d}"
    return postcode


def address_variant(rng, address):
    text, (long, short) = address
    if rng.random() < 0.5:
        text = text.replace(long, short)
    if rng.random() < 0.2:
        text = text.upper()
    return text


def records_for(rng, p, source):
    first, last = name_variant(rng, p.first), name_variant(rng, p.last)
    r = rng.random()
    if r < 0.04:
        first = typo(rng, first)
    elif r < 0.08:
        last = typo(rng, last)
    if rng.random() < 0.03:
        first, last = last, first
    if rng.random() < 0.03:
        first = rng.choice(TITLES) + first
    if rng.random() < 0.02:
        first = None
    email = email_variant(rng, p.email) if p.email and rng.random() < 0.93 else None
    phone = None
    if rng.random() < 0.75:
        number = p.mobile
        if p.home and (number is None or rng.random() < 0.3):
            number = p.home
        phone = phone_variant(rng, number) if number else None
    if rng.random() < 0.01:
        phone = rng.choice(["000-000-0000", "123-456-7890", "(555) 555-5555", "1111111111"])
    if rng.random() < 0.005:
        email = rng.choice(["noemail@example.com", "none@none.com", "test@test.com"])
    dob_rate = {"shopify": 0.2, "stripe": 0.0, "hubspot": 0.5}[source]
    dob = dob_variant(rng, p.dob, p.country) if rng.random() < dob_rate else None
    postcode = postcode_variant(rng, p.postcode) if rng.random() < 0.97 else None
    address = address_variant(rng, p.address) if rng.random() < 0.8 else None
    return [first, last, email, phone, dob, postcode, address]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default="-")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    people = make_people(rng, args.people)
    out = sys.stdout if args.out == "-" else open(args.out, "w", newline="", encoding="utf-8")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["record_id", "source", "true_id", "first_name", "last_name", "email", "phone", "dob", "postcode", "address"])
    rows = []
    for p in people:
        sources = [s for s, rate in (("shopify", 0.7), ("stripe", 0.5), ("hubspot", 0.5)) if rng.random() < rate]
        if not sources:
            sources = [rng.choice(["shopify", "stripe", "hubspot"])]
        if rng.random() < 0.03:
            sources.append("shopify")
        for s in sources:
            rows.append([s, p.pid] + records_for(rng, p, s))
    rng.shuffle(rows)
    prefix = {"shopify": "shp", "stripe": "cus", "hubspot": "hs"}
    for n, row in enumerate(rows):
        writer.writerow([f"{prefix[row[0]]}_{n:08d}"] + row)
    if out is not sys.stdout:
        out.close()


if __name__ == "__main__":
    main()
