//! The people behind the demo's events and how each source misspells them: a seeded random
//! source, canonical identities, and per-source variants (email case, dots and +tags, phone
//! formats, nicknames, typos, swapped names) like the ones real customer data has.

/// SplitMix64: small, seeded, the same sequence on every platform.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const FIRST: &[(&str, &str)] = &[
    ("Robert", "Bob"), ("William", "Bill"), ("Elizabeth", "Liz"), ("Katherine", "Kate"), ("Michael", "Mike"),
    ("Jennifer", "Jen"), ("James", "Jim"), ("Margaret", "Peggy"), ("Richard", "Dick"), ("Patricia", "Pat"),
    ("Daniel", "Dan"), ("Alexander", "Alex"), ("Christopher", "Chris"), ("Susan", "Sue"), ("Joseph", "Joe"),
    ("Anna", "Anna"), ("Olivia", "Liv"), ("Noah", "Noah"), ("Sofia", "Sofi"), ("Mateo", "Teo"),
    ("Aisha", "Aisha"), ("Wei", "Wei"), ("Priya", "Priya"), ("Lucas", "Luke"), ("Emma", "Em"),
];
const LAST: &[&str] = &[
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
    "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin",
    "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson",
    "Nguyen", "Patel", "Kowalski", "O'Brien", "Schmidt", "Rossi", "Kim", "Chen", "Singh", "Okafor",
];
const DOMAINS: &[&str] = &["gmail.com", "yahoo.com", "outlook.com", "icloud.com", "proton.me", "fastmail.com"];
const CITIES: &[(&str, &str, &str)] = &[
    ("Austin", "Texas", "TX"), ("Portland", "Oregon", "OR"), ("Denver", "Colorado", "CO"), ("Chicago", "Illinois", "IL"),
    ("Brooklyn", "New York", "NY"), ("Seattle", "Washington", "WA"), ("Atlanta", "Georgia", "GA"), ("Boston", "Massachusetts", "MA"),
];
const STREETS: &[&str] = &["Oak St", "Maple Ave", "Pine Rd", "Cedar Ln", "Elm St", "Lakeview Dr", "Hillcrest Blvd"];

/// One person, as they are.
#[derive(Debug, Clone)]
pub struct Person {
    pub id: usize,
    pub first: &'static str,
    pub nickname: &'static str,
    pub last: &'static str,
    /// Local part and domain of the email they use.
    pub local: String,
    pub domain: &'static str,
    /// Ten digits.
    pub phone: String,
    pub street: String,
    pub city: &'static str,
    pub state: &'static str,
    pub state_code: &'static str,
    pub zip: String,
}

impl Person {
    pub fn new(id: usize, rng: &mut Rng) -> Person {
        let (first, nickname) = *rng.pick(FIRST);
        let last = *rng.pick(LAST);
        let domain = *rng.pick(DOMAINS);
        let clean = |s: &str| s.to_ascii_lowercase().replace(['\'', ' '], "");
        let local = match rng.below(4) {
            0 => format!("{}.{}", clean(first), clean(last)),
            1 => format!("{}{}", &clean(first)[..1], clean(last)),
            2 => format!("{}{}{}", clean(first), clean(last), rng.below(90) + 10),
            _ => format!("{}_{}", clean(last), clean(first)),
        };
        // Unique per person: the id keeps two namesakes apart.
        let local = format!("{local}{}", if id % 7 == 0 { String::new() } else { format!(".{id}") });
        let (city, state, state_code) = *rng.pick(CITIES);
        Person {
            id,
            first,
            nickname,
            last,
            local,
            domain,
            phone: format!("{}{:03}{:04}", rng.pick(&["415", "512", "503", "720", "312", "718"]), rng.below(800) + 200, rng.below(10_000)),
            street: format!("{} {}", rng.below(9000) + 100, rng.pick(STREETS)),
            city,
            state,
            state_code,
            zip: format!("{:05}", rng.below(90_000) + 10_000),
        }
    }

    /// The email as one source holds it: mostly as typed, sometimes in other case, padded,
    /// with a `+tag`, or (Gmail) with dots dropped.
    pub fn email(&self, rng: &mut Rng) -> String {
        let mut local = self.local.clone();
        if rng.chance(0.15) {
            local = format!("{local}+{}", rng.pick(&["shop", "news", "promo", "2026"]));
        }
        if self.domain == "gmail.com" && rng.chance(0.2) {
            local = local.replace('.', "");
        }
        let email = format!("{local}@{}", self.domain);
        match rng.below(10) {
            0 => email.to_ascii_uppercase(),
            1 => format!(" {email} "),
            2 => capitalize(&email),
            _ => email,
        }
    }

    /// The phone in one of the formats people type.
    pub fn phone(&self, rng: &mut Rng) -> String {
        let p = &self.phone;
        match rng.below(5) {
            0 => format!("+1{p}"),
            1 => format!("({}) {}-{}", &p[..3], &p[3..6], &p[6..]),
            2 => format!("{}-{}-{}", &p[..3], &p[3..6], &p[6..]),
            3 => format!("+1 {}.{}.{}", &p[..3], &p[3..6], &p[6..]),
            _ => p.clone(),
        }
    }

    /// First and last name as one source holds them: a nickname, a typo, or swapped now and then.
    pub fn name(&self, rng: &mut Rng) -> (String, String) {
        let mut first = if rng.chance(0.2) { self.nickname.to_string() } else { self.first.to_string() };
        let mut last = self.last.to_string();
        if rng.chance(0.05) {
            last = typo(&last, rng);
        }
        if rng.chance(0.03) {
            std::mem::swap(&mut first, &mut last);
        }
        if rng.chance(0.1) {
            first = first.to_ascii_lowercase();
        }
        (first, last)
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

/// One character doubled, dropped or swapped with the next.
fn typo(s: &str, rng: &mut Rng) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() < 3 {
        return s.to_string();
    }
    let i = 1 + rng.below(chars.len() as u64 - 2) as usize;
    let mut out = chars.clone();
    match rng.below(3) {
        0 => out.insert(i, chars[i]),
        1 => {
            out.remove(i);
        }
        _ => out.swap(i, i + 1),
    }
    out.into_iter().collect()
}
