//! Clusters and stable ids: transitive closure of matched pairs (union-find; with the
//! probabilistic scoring, strongest pair first and never across a pair found apart), and
//! entity ids that survive across runs.
//!
//! A cluster holding records that had ids before keeps the oldest of those ids (by the
//! earliest `first_seen` of the records carrying it, then by id); the other ids are recorded
//! as merged into it. A cluster of new records only gets an id derived from its oldest
//! record, so rerunning over the same data gives the same ids.

use sha2::{Digest, Sha256};

/// Disjoint sets over `0..n` with path halving and union by size.
#[derive(Debug, Clone)]
pub struct UnionFind {
    parent: Vec<u32>,
    size: Vec<u32>,
}

impl UnionFind {
    pub fn new(n: usize) -> Self {
        Self { parent: (0..n as u32).collect(), size: vec![1; n] }
    }

    pub fn find(&mut self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            let grandparent = self.parent[self.parent[x as usize] as usize];
            self.parent[x as usize] = grandparent;
            x = grandparent;
        }
        x
    }

    /// Joins the sets of `a` and `b`; whether they were apart.
    pub fn union(&mut self, a: u32, b: u32) -> bool {
        let (mut ra, mut rb) = (self.find(a), self.find(b));
        if ra == rb {
            return false;
        }
        if self.size[ra as usize] < self.size[rb as usize] {
            std::mem::swap(&mut ra, &mut rb);
        }
        self.parent[rb as usize] = ra;
        self.size[ra as usize] += self.size[rb as usize];
        true
    }

    /// Members grouped by set, each group ascending, groups ordered by their first member.
    pub fn groups(&mut self) -> Vec<Vec<u32>> {
        let n = self.parent.len();
        let mut slot = vec![u32::MAX; n];
        let mut groups: Vec<Vec<u32>> = Vec::new();
        for x in 0..n as u32 {
            let root = self.find(x) as usize;
            if slot[root] == u32::MAX {
                slot[root] = groups.len() as u32;
                groups.push(Vec::new());
            }
            groups[slot[root] as usize].push(x);
        }
        groups
    }
}

/// Union-find that refuses to join two sets holding a pair known to be apart.
#[derive(Debug, Clone)]
pub struct Apart {
    sets: UnionFind,
    /// Per set root: the records some member is known to be apart from.
    partners: Vec<Vec<u32>>,
}

impl Apart {
    /// Sets over `0..n` that `links` (every pair that will be joined or forced) may join,
    /// never across a pair of `apart`. Only an apart pair inside one component of `links` can
    /// ever stop a join, so only those are kept: most pairs found apart (millions, at a
    /// million records) are between records no chain of links reaches from one to the other.
    pub fn new(n: usize, apart: &[(u32, u32)], links: impl IntoIterator<Item = (u32, u32)>) -> Self {
        let mut reach = UnionFind::new(n);
        for (a, b) in links {
            reach.union(a, b);
        }
        let component: Vec<u32> = (0..n as u32).map(|x| reach.find(x)).collect();
        let mut partners = vec![Vec::new(); n];
        for &(a, b) in apart {
            if component[a as usize] == component[b as usize] {
                partners[a as usize].push(b);
                partners[b as usize].push(a);
            }
        }
        Self { sets: UnionFind::new(n), partners }
    }

    /// Joins the sets of `a` and `b` whatever they hold (a cluster the index already has).
    pub fn force(&mut self, a: u32, b: u32) {
        let (ra, rb) = (self.sets.find(a), self.sets.find(b));
        if self.sets.union(a, b) {
            let root = self.sets.find(a);
            let other = if root == ra { rb } else { ra };
            let moved = std::mem::take(&mut self.partners[other as usize]);
            self.partners[root as usize].extend(moved);
        }
    }

    /// Joins the sets of `a` and `b` unless a member of one is apart from a member of the
    /// other; whether they are one set now.
    pub fn join(&mut self, a: u32, b: u32) -> bool {
        let (ra, rb) = (self.sets.find(a), self.sets.find(b));
        if ra == rb {
            return true;
        }
        let (small, large) = if self.partners[ra as usize].len() <= self.partners[rb as usize].len() { (ra, rb) } else { (rb, ra) };
        let sets = &mut self.sets;
        if self.partners[small as usize].iter().any(|&p| sets.find(p) == large) {
            return false;
        }
        self.force(a, b);
        true
    }

    pub fn groups(&mut self) -> Vec<Vec<u32>> {
        self.sets.groups()
    }
}

/// The id a cluster first gets: derived from its oldest record (`salt` > 0 only when that
/// id is already taken).
pub fn new_entity_id(source: &str, source_id: &str, salt: u32) -> String {
    let mut hasher = Sha256::new();
    hasher.update(source.as_bytes());
    hasher.update([0x1f]);
    hasher.update(source_id.as_bytes());
    if salt > 0 {
        hasher.update(salt.to_le_bytes());
    }
    let digest = hasher.finalize();
    format!("ent_{}", hex::encode(&digest[..8]))
}
