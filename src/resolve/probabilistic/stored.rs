//! A trained model as it is kept between runs: its parameters as JSON and its term
//! frequencies as `(role, value, count)` rows. A run that reuses it scores every pair as the
//! run that trained it would, which is what makes incremental runs equal a full build.

use foldhash::{HashMap, HashMapExt};

use anyhow::{Context, Result, anyhow, ensure};
use serde::{Deserialize, Serialize};

use super::super::compare::Kind;
use super::train::{Frequencies, household_kinds};
use super::{Comparison, CurvePoint, Level, Model};

/// Bumped whenever the stored form or the meaning of a level changes: an older model is then
/// retrained, not misread.
const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Params {
    format: u32,
    prior: f64,
    threshold: f64,
    threshold_chosen: bool,
    u_sample_pairs: u64,
    records: u64,
    household: Vec<f64>,
    curve: Vec<CurvePoint>,
    comparisons: Vec<Levels>,
}

#[derive(Serialize, Deserialize)]
struct Levels {
    role: String,
    m: Vec<f64>,
    u: Vec<f64>,
    /// Records with a value, when the comparison adjusts for term frequencies.
    tf_total: Option<u64>,
}

impl Model {
    /// The model's parameters as JSON; [`Model::term_frequencies`] holds the rest.
    pub fn params_json(&self) -> String {
        let params = Params {
            format: FORMAT,
            prior: self.prior,
            threshold: self.threshold,
            threshold_chosen: self.threshold_chosen,
            u_sample_pairs: self.u_sample_pairs,
            records: self.records,
            household: self.household.clone(),
            curve: self.curve.clone(),
            comparisons: self
                .comparisons
                .iter()
                .map(|c| Levels {
                    role: c.role.to_string(),
                    m: c.levels.iter().map(|l| l.m).collect(),
                    u: c.levels.iter().map(|l| l.u).collect(),
                    tf_total: c.tf.as_ref().map(Frequencies::total),
                })
                .collect(),
        };
        serde_json::to_string(&params).expect("a model serializes")
    }

    /// Every `(role, value, count)` of the term frequencies (values held more than once).
    pub fn term_frequencies(&self) -> impl Iterator<Item = (&'static str, &str, u32)> + '_ {
        self.comparisons
            .iter()
            .filter_map(|c| c.tf.as_ref().map(|tf| (c.role, tf)))
            .flat_map(|(role, tf)| tf.counts().map(move |(v, n)| (role, v, n)))
    }

    /// The model stored as [`Model::params_json`] and [`Model::term_frequencies`].
    pub fn from_stored(params: &str, tf: impl IntoIterator<Item = (String, String, u32)>) -> Result<Model> {
        let params: Params = serde_json::from_str(params).context("not a stored model")?;
        ensure!(params.format == FORMAT, "a model stored in format {} (this lake reads {FORMAT})", params.format);
        let mut counts: HashMap<String, HashMap<Box<str>, u32>> = HashMap::new();
        for (role, value, n) in tf {
            counts.entry(role).or_default().insert(value.into_boxed_str(), n);
        }
        let mut comparisons = Vec::new();
        for c in params.comparisons {
            let kind = Kind::ALL
                .into_iter()
                .find(|k| k.role().name() == c.role)
                .ok_or_else(|| anyhow!("a stored model compares `{}`, which is not a role", c.role))?;
            let labels = kind.labels();
            ensure!(
                c.m.len() == labels.len() && c.u.len() == labels.len(),
                "the stored model has {} levels for `{}`, not {}",
                c.m.len(),
                c.role,
                labels.len()
            );
            let levels = labels
                .iter()
                .zip(c.m.iter().zip(&c.u))
                .map(|(label, (&m, &u))| Level { label, m, u, weight: (m / u).log2() })
                .collect();
            let tf = c.tf_total.map(|total| Frequencies::from_counts(counts.remove(&c.role).unwrap_or_default(), total));
            comparisons.push(Comparison { role: kind.role().name(), levels, kind, tf });
        }
        let kinds: Vec<Kind> = comparisons.iter().map(|c| c.kind).collect();
        Ok(Model {
            household_kinds: household_kinds(&kinds),
            comparisons,
            prior: params.prior,
            threshold: params.threshold,
            threshold_chosen: params.threshold_chosen,
            u_sample_pairs: params.u_sample_pairs,
            records: params.records,
            curve: params.curve,
            household: params.household,
        })
    }
}
