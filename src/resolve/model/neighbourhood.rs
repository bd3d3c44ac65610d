//! The part of the stored entity index an incremental `resolve_entities` run needs, so that
//! the run's cost follows the change, not the index.
//!
//! An incremental run compares the changed records (and the other records of the clusters
//! they were in) against every indexed record that shares a blocking key with them, and
//! keeps every other cluster as it is. So it needs only: the rows of the changed records'
//! clusters, the rows that share a block with any record compared, and the rest of those
//! rows' clusters (a new record that joins two clusters renames every record of the younger
//! one). They are found by scanning the index's columns in place (blocking keys hashed on
//! both cores, nothing copied), and only they are read into records. Every block that holds
//! a compared record is loaded whole, so blocking (and `max_block_size`) sees exactly what a
//! run over the whole index sees.


// foldhash, as in `resolve` (see there).
use foldhash::{HashMap, HashSet, HashSetExt};

use anyhow::{Result, bail};
use polars::prelude::{DataFrame, IdxCa, IdxSize, StringChunked};
use rayon::prelude::*;

use super::{IndexRow, Raw, index_text, read_index, unchanged};
use crate::resolve::config::Role;
use crate::resolve::matching::{Roles, hashed_key};
use crate::resolve::{Entry, Resolver};

/// The index's key and normalized columns, read in place.
struct Columns<'a> {
    entity_id: &'a StringChunked,
    source: &'a StringChunked,
    source_id: &'a StringChunked,
    norms: Vec<&'a StringChunked>,
}

/// One row of [`Columns`], seen as a record's normalized values.
struct Row<'a> {
    columns: &'a Columns<'a>,
    at: usize,
}

impl Roles for Row<'_> {
    fn role(&self, role: Role) -> Option<&str> {
        self.columns.norms[role.index()].get(self.at)
    }
}

impl<'a> Columns<'a> {
    fn of(index: &'a DataFrame) -> Result<Self> {
        let column = |name: &str| index_text(index, name);
        let mut norms = Vec::with_capacity(Role::ALL.len());
        for role in Role::ALL {
            norms.push(column(role.name())?);
        }
        Ok(Self { entity_id: column("entity_id")?, source: column("source")?, source_id: column("source_id")?, norms })
    }

    /// Positions of the rows whose entity is one of `ids`.
    fn in_entities(&self, ids: &HashSet<&str>) -> Vec<usize> {
        if ids.is_empty() {
            return Vec::new();
        }
        (0..self.entity_id.len()).into_par_iter().filter(|&at| self.entity_id.get(at).is_some_and(|id| ids.contains(id))).collect()
    }
}

/// The rows at `positions` (ascending), read into records.
fn rows_at(index: &DataFrame, positions: &[usize]) -> Result<Vec<IndexRow>> {
    let positions: Vec<IdxSize> = positions.iter().map(|&p| p as IdxSize).collect();
    read_index(&index.take(&IdxCa::from_vec("at".into(), positions))?)
}

/// What an incremental run resolves.
pub(super) struct Neighbourhood<'a> {
    /// The part of the index the change needs, as rows ready for `incremental_entries`.
    pub rows: Vec<IndexRow>,
    /// The changed arrivals, with their priors (arrivals equal to their indexed row are dropped).
    pub arrivals: Vec<(Entry, Raw)>,
    /// Every entity id of the index: a new entity must take none of them, read or not.
    pub ids: HashSet<&'a str>,
}

/// The [`Neighbourhood`] of `incoming` in `index`.
pub(super) fn around<'a>(index: &'a DataFrame, resolver: &Resolver, incoming: Vec<(Entry, Raw)>) -> Result<Neighbourhood<'a>> {
    let columns = Columns::of(index)?;
    for (name, column) in [("entity_id", columns.entity_id), ("source", columns.source), ("source_id", columns.source_id)] {
        if column.null_count() > 0 {
            let row = column.iter().position(|v| v.is_none()).unwrap_or(0);
            bail!("row {} of the entity index has no `{name}`", row + 1);
        }
    }

    // The indexed rows of the arrivals.
    let wanted: HashSet<(&str, &str)> =
        incoming.iter().map(|(e, _)| (e.source.as_str(), e.source_id.as_str())).collect();
    let own: Vec<usize> = (0..index.height())
        .into_par_iter()
        .filter(|&at| match (columns.source.get(at), columns.source_id.get(at)) {
            (Some(s), Some(i)) => wanted.contains(&(s, i)),
            _ => false,
        })
        .collect();
    let own_rows = rows_at(index, &own)?;
    let own_at: HashMap<(&str, &str), &IndexRow> =
        own_rows.iter().map(|r| ((r.entry.source.as_str(), r.entry.source_id.as_str()), r)).collect();

    // Changed arrivals, with their priors; the clusters they were in are resolved again.
    let mut arrivals = Vec::with_capacity(incoming.len());
    let mut affected: HashSet<&str> = HashSet::new();
    for (mut entry, raw) in incoming {
        if let Some(row) = own_at.get(&(entry.source.as_str(), entry.source_id.as_str())) {
            if unchanged(row, &entry, &raw) {
                continue;
            }
            entry.prior = row.entry.prior.clone();
            if let Some(p) = &row.entry.prior {
                affected.insert(p.entity_id.as_str());
            }
        }
        arrivals.push((entry, raw));
    }
    let moved = columns.in_entities(&affected);

    // The blocking keys of every record compared: the arrivals and the moved clusters.
    let rules = &resolver.config().rules;
    let mut keys: Vec<HashSet<u64>> = vec![HashSet::new(); rules.len()];
    let mut add_keys = |roles: &dyn Roles| {
        for (r, rule) in rules.iter().enumerate() {
            if let Some(k) = key(roles, &rule.block_on) {
                keys[r].insert(k);
            }
        }
    };
    for (entry, _) in &arrivals {
        add_keys(&entry.norm);
    }
    for &at in &moved {
        add_keys(&Row { columns: &columns, at });
    }

    // Rows sharing a block with a compared record, and the rest of their clusters.
    let mates: Vec<usize> = (0..index.height())
        .into_par_iter()
        .filter(|&at| {
            let row = Row { columns: &columns, at };
            rules.iter().zip(&keys).any(|(rule, keys)| {
                !keys.is_empty() && key(&row, &rule.block_on).is_some_and(|k| keys.contains(&k))
            })
        })
        .collect();
    let mate_ids: HashSet<&str> = mates.iter().filter_map(|&at| columns.entity_id.get(at)).collect();
    let mut needed = columns.in_entities(&mate_ids);
    needed.extend(moved);
    needed.sort_unstable();
    needed.dedup();
    let ids = columns.entity_id.iter().flatten().collect();
    Ok(Neighbourhood { rows: rows_at(index, &needed)?, arrivals, ids })
}

/// A blocking key as blocking hashes it (a hash of 0 is 1 there).
fn key(roles: &(impl Roles + ?Sized), fields: &[crate::resolve::config::Field]) -> Option<u64> {
    hashed_key(roles, fields).map(|k| k.max(1))
}
