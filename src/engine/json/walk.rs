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
    Branch { keys: Vec<(String, Node)>, indices: Vec<(usize, Node)> },
}

impl Paths {
    /// The trie of `paths` (steps, and whether to count there); path `i` ends at slot `i`.
    /// `Err` names the first path that is a prefix of another or repeats one.
    pub(super) fn new<'a>(paths: impl IntoIterator<Item = (&'a [Step], bool)>) -> Result<Self, usize> {
        let mut root = None;
        let mut slots = 0;
        for (slot, (steps, counting)) in paths.into_iter().enumerate() {
            insert(&mut root, steps, Node::Leaf { slot, counting }).map_err(|()| slot)?;
            slots += 1;
        }
        let root = root.unwrap_or(Node::Branch { keys: Vec::new(), indices: Vec::new() });
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

fn insert(at: &mut Option<Node>, steps: &[Step], leaf: Node) -> Result<(), ()> {
    let Some((step, rest)) = steps.split_first() else {
        // A path ends where another passes or ends.
        return if at.is_none() {
            *at = Some(leaf);
            Ok(())
        } else {
            Err(())
        };
    };
    let node = at.get_or_insert_with(|| Node::Branch { keys: Vec::new(), indices: Vec::new() });
    let Node::Branch { keys, indices } = node else {
        return Err(());
    };
    let mut child = match step {
        Step::Key(k) => keys.iter().position(|(key, _)| key == k).map(|i| keys.remove(i).1),
        Step::Index(n) => indices.iter().position(|(i, _)| i == n).map(|i| indices.remove(i).1),
    };
    insert(&mut child, rest, leaf)?;
    let child = child.expect("inserted");
    match step {
        Step::Key(k) => keys.push((k.clone(), child)),
        Step::Index(n) => indices.push((*n, child)),
    }
    Ok(())
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
        let keys = match self.node {
            Node::Leaf { slot, .. } => {
                let mut n = 0i64;
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {
                    n += 1;
                }
                self.out[*slot] = Some(Value::from(n));
                return Ok(());
            }
            Node::Branch { keys, .. } => keys,
        };
        let mut seen = vec![false; keys.len()];
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let hit = keys.iter().enumerate().position(|(i, (k, _))| !seen[i] && *k == key);
            match hit {
                Some(i) => {
                    seen[i] = true;
                    map.next_value_seed(Walk { node: &keys[i].1, out: &mut *self.out })?;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let indices = match self.node {
            Node::Leaf { slot, .. } => {
                let mut n = 0i64;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    n += 1;
                }
                self.out[*slot] = Some(Value::from(n));
                return Ok(());
            }
            Node::Branch { indices, .. } => indices,
        };
        let mut i = 0;
        loop {
            let more = match indices.iter().find(|(n, _)| *n == i) {
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
