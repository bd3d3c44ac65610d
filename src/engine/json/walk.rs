//! One pass over a JSON text for any number of paths: the paths as a trie ([`Paths`]), followed
//! through the text's bytes by a scanner that checks, without building, everything off the
//! paths (an iterative skip; a string's end found by `memchr`). At a path's end the value
//! there is taken as it is written when it can be (a string without escapes, a short integer,
//! `true`, `false`, `null`: [`Found`]), else built by serde_json, or its members counted. An object's key matches
//! its first occurrence only; a text that is not JSON, or has anything but whitespace after the
//! value, finds nothing at any path. What counts as JSON is what serde_json's reader accepts:
//! a skipped string's escapes are checked as serde_json checks an ignored one (`\u` and four
//! hex digits), a skipped number by its grammar; a key with an escape and a value built are
//! read by serde_json itself.

use std::borrow::Cow;

use serde_json::Value;

/// The value at a path: borrowed from the text where it can be, else built by serde_json.
#[derive(Debug, Clone)]
pub(super) enum Found<'t> {
    /// A string without escapes.
    Str(&'t str),
    /// An integer of at most 18 digits (any i64 serde_json would read there), or a count.
    Int(i64),
    Bool(bool),
    Null,
    /// Anything else: an escaped string, another number, an object or an array.
    Value(Value),
}

/// One step of a path: an object key or an array index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Step {
    Key(String),
    Index(usize),
}

/// Paths followed together, none a prefix of another; each ends at a slot of the output.
#[derive(Debug)]
pub(super) struct Paths {
    root: Node,
    slots: usize,
}

#[derive(Debug)]
enum Node {
    /// A path ends here: build the value into `slot`, or (`counting`) count its members.
    Leaf { slot: usize, counting: bool },
    /// Paths go on through these keys and indices.
    Branch(Vec<(Step, Node)>),
}

impl Paths {
    /// The trie of `paths` (steps, and whether to count there); path `i` ends at slot `i`.
    /// `Err` names the first path that is a prefix of another or repeats one.
    pub(super) fn new<'a>(paths: impl IntoIterator<Item = (&'a [Step], bool)>) -> Result<Self, usize> {
        let mut root = Node::Branch(Vec::new());
        let mut slots = 0;
        for (slot, (steps, counting)) in paths.into_iter().enumerate() {
            let leaf = Node::Leaf { slot, counting };
            match &root {
                // The whole text: the only path there can be.
                Node::Branch(children) if children.is_empty() && steps.is_empty() => root = leaf,
                _ => insert(&mut root, steps, leaf).map_err(|()| slot)?,
            }
            slots += 1;
        }
        Ok(Self { root, slots })
    }

    pub(super) fn slots(&self) -> usize {
        self.slots
    }

    /// What is at each path in `text`, into `out` (one per slot; `None`: nothing there). A
    /// count is a number value.
    pub(super) fn find<'t>(&self, text: &'t str, out: &mut [Option<Found<'t>>]) {
        out.fill(None);
        let mut scan = Scanner { text, bytes: text.as_bytes(), at: 0 };
        let whole = scan.walk(&self.root, out).is_ok() && {
            scan.space();
            scan.at == scan.bytes.len()
        };
        if !whole {
            out.fill(None);
        }
    }
}

/// `Err` when the path ends where another passes or ends, or passes where another ends.
fn insert(node: &mut Node, steps: &[Step], leaf: Node) -> Result<(), ()> {
    let (Node::Branch(children), Some((step, rest))) = (node, steps.split_first()) else {
        return Err(());
    };
    match children.iter_mut().find(|(s, _)| s == step) {
        Some((_, child)) => insert(child, rest, leaf),
        None => {
            let chain = rest.iter().rev().fold(leaf, |node, s| Node::Branch(vec![(s.clone(), node)]));
            children.push((step.clone(), chain));
            Ok(())
        }
    }
}

/// The text is not JSON (or not where the scanner stands).
struct NotJson;

type Scanned<T = ()> = Result<T, NotJson>;

/// A JSON text read forward from byte `at`.
struct Scanner<'t> {
    text: &'t str,
    bytes: &'t [u8],
    at: usize,
}

impl<'t> Scanner<'t> {
    fn space(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    fn peek(&self) -> Scanned<u8> {
        self.bytes.get(self.at).copied().ok_or(NotJson)
    }

    fn expect(&mut self, byte: u8) -> Scanned {
        self.space();
        match self.peek()? == byte {
            true => Ok(self.at += 1),
            false => Err(NotJson),
        }
    }

    /// Follows `node` through the value that comes next.
    fn walk(&mut self, node: &Node, out: &mut [Option<Found<'t>>]) -> Scanned {
        self.space();
        match node {
            Node::Leaf { slot, counting: false } => {
                out[*slot] = Some(self.value()?);
                Ok(())
            }
            Node::Leaf { slot, counting: true } => match self.peek()? {
                open @ (b'{' | b'[') => {
                    let mut n = 0i64;
                    self.members(open == b'{', |scan, _| {
                        n += 1;
                        scan.skip()
                    })?;
                    out[*slot] = Some(Found::Int(n));
                    Ok(())
                }
                // A scalar where a count was asked: nothing there.
                _ => self.skip(),
            },
            Node::Branch(children) => match self.peek()? {
                b'{' => {
                    // Which children were walked: a key repeated in the object is skipped.
                    let mut seen = Seen::new(children.len());
                    self.members(true, |scan, key| {
                        let key = key.expect("an object's member has a key");
                        let hit = (children.iter().enumerate())
                            .position(|(i, (s, _))| matches!(s, Step::Key(k) if *k == *key) && !seen.get(i));
                        match hit {
                            Some(i) => {
                                seen.set(i);
                                scan.walk(&children[i].1, out)
                            }
                            None => scan.skip(),
                        }
                    })
                }
                b'[' => {
                    let mut i = 0;
                    self.members(false, |scan, _| {
                        let found = children.iter().find(|(s, _)| *s == Step::Index(i));
                        i += 1;
                        match found {
                            Some((_, node)) => scan.walk(node, out),
                            None => scan.skip(),
                        }
                    })
                }
                // A scalar where the paths go on: nothing there.
                _ => self.skip(),
            },
        }
    }

    /// The value at the scanner, read as serde_json would read it.
    fn value(&mut self) -> Scanned<Found<'t>> {
        let start = self.at;
        let found = match self.peek()? {
            b'"' => match self.string()? {
                false => Some(Found::Str(&self.text[start + 1..self.at - 1])),
                true => None,
            },
            b't' => self.literal(b"true").map(|()| Some(Found::Bool(true)))?,
            b'f' => self.literal(b"false").map(|()| Some(Found::Bool(false)))?,
            b'n' => self.literal(b"null").map(|()| Some(Found::Null))?,
            b'-' | b'0'..=b'9' => {
                self.number()?;
                let text = &self.text[start..self.at];
                let digits = text.strip_prefix('-').unwrap_or(text);
                // 18 digits always fit an i64; longer ones, fractions, exponents and `-0` (a
                // float to serde_json) go to serde_json.
                match digits.len() <= 18 && digits.bytes().all(|b| b.is_ascii_digit()) && text != "-0" {
                    true => Some(Found::Int(text.parse().map_err(|_| NotJson)?)),
                    false => None,
                }
            }
            _ => {
                self.skip()?;
                None
            }
        };
        match found {
            Some(found) => Ok(found),
            None => serde_json::from_str(&self.text[start..self.at]).map(Found::Value).map_err(|_| NotJson),
        }
    }

    /// Reads the object (`object`) or array at the scanner, calling `member` at each member's
    /// value with its key (objects), which must read that value.
    fn members(&mut self, object: bool, mut member: impl FnMut(&mut Self, Option<Cow<'t, str>>) -> Scanned) -> Scanned {
        let close = if object { b'}' } else { b']' };
        self.at += 1;
        self.space();
        if self.peek()? == close {
            self.at += 1;
            return Ok(());
        }
        loop {
            let key = match object {
                true => {
                    self.space();
                    let key = self.key()?;
                    self.expect(b':')?;
                    Some(key)
                }
                false => None,
            };
            self.space();
            member(self, key)?;
            self.space();
            match self.peek()? {
                b',' => self.at += 1,
                c if c == close => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return Err(NotJson),
            }
        }
    }

    /// An object's key: borrowed when it has no escape, else read by serde_json.
    fn key(&mut self) -> Scanned<Cow<'t, str>> {
        let start = self.at;
        let escaped = self.string()?;
        let raw = &self.text[start..self.at];
        match escaped {
            false => Ok(Cow::Borrowed(&raw[1..raw.len() - 1])),
            true => serde_json::from_str::<String>(raw).map(Cow::Owned).map_err(|_| NotJson),
        }
    }

    /// Past the string at the scanner (which must start one); whether it has an escape.
    fn string(&mut self) -> Scanned<bool> {
        if self.peek()? != b'"' {
            return Err(NotJson);
        }
        self.at += 1;
        let mut escaped = false;
        loop {
            let rest = &self.bytes[self.at..];
            let end = memchr::memchr2(b'"', b'\\', rest).ok_or(NotJson)?;
            // No control character unescaped (a fold, not `any`, so that it vectorizes).
            if rest[..end].iter().fold(false, |control, &b| control | (b < 0x20)) {
                return Err(NotJson);
            }
            self.at += end;
            if rest[end] == b'"' {
                self.at += 1;
                return Ok(escaped);
            }
            escaped = true;
            match self.bytes.get(self.at + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.at += 2,
                Some(b'u') => {
                    let hex = self.bytes.get(self.at + 2..self.at + 6).ok_or(NotJson)?;
                    if !hex.iter().all(u8::is_ascii_hexdigit) {
                        return Err(NotJson);
                    }
                    self.at += 6;
                }
                _ => return Err(NotJson),
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while let Some(b'0'..=b'9') = self.bytes.get(self.at) {
            self.at += 1;
        }
        self.at - start
    }

    /// Past the number at the scanner, by JSON's grammar.
    fn number(&mut self) -> Scanned {
        if self.peek()? == b'-' {
            self.at += 1;
        }
        match self.peek()? {
            b'0' => {
                self.at += 1;
                if let Some(b'0'..=b'9') = self.bytes.get(self.at) {
                    return Err(NotJson);
                }
            }
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return Err(NotJson),
        }
        if self.bytes.get(self.at) == Some(&b'.') {
            self.at += 1;
            if self.digits() == 0 {
                return Err(NotJson);
            }
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.at) {
            self.at += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.at) {
                self.at += 1;
            }
            if self.digits() == 0 {
                return Err(NotJson);
            }
        }
        Ok(())
    }

    fn literal(&mut self, word: &[u8]) -> Scanned {
        match self.bytes.get(self.at..self.at + word.len()) == Some(word) {
            true => Ok(self.at += word.len()),
            false => Err(NotJson),
        }
    }

    /// Past the value at the scanner, checked, nothing built: iterative, so any depth goes.
    fn skip(&mut self) -> Scanned {
        // Open containers, innermost last: `true` for an object.
        let mut open: Vec<bool> = Vec::new();
        loop {
            self.space();
            match self.peek()? {
                b'"' => {
                    self.string()?;
                }
                b'{' | b'[' => {
                    let object = self.peek()? == b'{';
                    self.at += 1;
                    self.space();
                    if self.peek()? == if object { b'}' } else { b']' } {
                        self.at += 1;
                    } else {
                        open.push(object);
                        if object {
                            self.string()?;
                            self.expect(b':')?;
                        }
                        continue;
                    }
                }
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                b'-' | b'0'..=b'9' => self.number()?,
                _ => return Err(NotJson),
            }
            // After a value: close what ends here, or go on to the next member.
            loop {
                let Some(&object) = open.last() else { return Ok(()) };
                self.space();
                match self.peek()? {
                    b',' => {
                        self.at += 1;
                        if object {
                            self.space();
                            self.string()?;
                            self.expect(b':')?;
                        }
                        break;
                    }
                    b'}' if object => {
                        self.at += 1;
                        open.pop();
                    }
                    b']' if !object => {
                        self.at += 1;
                        open.pop();
                    }
                    _ => return Err(NotJson),
                }
            }
        }
    }
}

/// A set of child positions: a bit mask, or a vector past 64 children (no allocation for the
/// objects of a usual path).
enum Seen {
    Bits(u64),
    Many(Vec<bool>),
}

impl Seen {
    fn new(n: usize) -> Self {
        if n <= 64 { Seen::Bits(0) } else { Seen::Many(vec![false; n]) }
    }

    fn get(&self, i: usize) -> bool {
        match self {
            Seen::Bits(b) => b & (1 << i) != 0,
            Seen::Many(v) => v[i],
        }
    }

    fn set(&mut self, i: usize) {
        match self {
            Seen::Bits(b) => *b |= 1 << i,
            Seen::Many(v) => v[i] = true,
        }
    }
}
