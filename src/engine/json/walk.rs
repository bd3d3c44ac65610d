//! One pass over a JSON text for any number of paths: the paths as a trie ([`Paths`]), followed
//! through the text by a serde visitor that skips, without building, everything off the paths.
//! At a path's end the value there is built (or its members counted, none built). An object's
//! key matches its first occurrence only; a text that is not JSON, or has anything but
//! whitespace after the value, finds nothing at any path.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

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
    pub(super) fn find(&self, text: &str, out: &mut [Option<Value>]) {
        out.fill(None);
        let mut de = serde_json::Deserializer::from_str(text);
        let whole = Walk { node: &self.root, out: &mut *out }.deserialize(&mut de).is_ok() && de.end().is_ok();
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

/// Follows the trie through whatever value comes next.
struct Walk<'n, 'o> {
    node: &'n Node,
    out: &'o mut [Option<Value>],
}

impl<'de> DeserializeSeed<'de> for Walk<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        match self.node {
            Node::Leaf { slot, counting: false } => {
                self.out[*slot] = Some(Value::deserialize(d)?);
                Ok(())
            }
            // Counting, or on along the paths: the visitor below.
            _ => d.deserialize_any(self),
        }
    }
}

impl<'de> Visitor<'de> for Walk<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let children = match self.node {
            Node::Leaf { slot, .. } => {
                let mut n = 0i64;
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {
                    n += 1;
                }
                self.out[*slot] = Some(Value::from(n));
                return Ok(());
            }
            Node::Branch(children) => children,
        };
        // Which children were walked: a key repeated in the object is skipped.
        let mut seen = Seen::new(children.len());
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let hit = (children.iter().enumerate())
                .position(|(i, (s, _))| matches!(s, Step::Key(k) if *k == key) && !seen.get(i));
            match hit {
                Some(i) => {
                    seen.set(i);
                    map.next_value_seed(Walk { node: &children[i].1, out: &mut *self.out })?;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let children = match self.node {
            Node::Leaf { slot, .. } => {
                let mut n = 0i64;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    n += 1;
                }
                self.out[*slot] = Some(Value::from(n));
                return Ok(());
            }
            Node::Branch(children) => children,
        };
        let mut i = 0;
        loop {
            let more = match children.iter().find(|(s, _)| *s == Step::Index(i)) {
                Some((_, node)) => seq.next_element_seed(Walk { node, out: &mut *self.out })?.is_some(),
                None => seq.next_element::<IgnoredAny>()?.is_some(),
            };
            if !more {
                return Ok(());
            }
            i += 1;
        }
    }

    // Scalars where the paths go on, or to count: nothing there.
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
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
