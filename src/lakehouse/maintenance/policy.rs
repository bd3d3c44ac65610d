//! The maintenance policy of a table: the model's `config: maintenance: {...}` over the table
//! properties `lake.maintenance.<key>` over the defaults, and the duration syntax they use.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use iceberg::table::Table;
use serde::{Deserialize, Serialize};

use super::PROPERTY_PREFIX;

const MB: f64 = 1024.0 * 1024.0;

/// How a table is maintained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawPolicy")]
pub struct MaintenancePolicy {
    /// `lake maintain` skips the table when false.
    pub enabled: bool,
    /// Compaction writes files of about this size.
    pub target_file_size_mb: u64,
    /// Compact a partition only when it has at least this many small files (>= 2).
    pub min_input_files: usize,
    /// Files smaller than this are small (default: 75% of the target).
    pub small_file_mb: f64,
    /// Merge the manifests even without small files when the current snapshot has more data
    /// manifests than this.
    pub max_manifests: usize,
    /// Snapshots older than this may expire ...
    #[serde(serialize_with = "ser_duration")]
    pub expire_older_than: Duration,
    /// ... but the newest this many snapshots of the current history always stay (>= 1).
    pub retain_last: usize,
    /// Unreferenced files are removed only when older than this (protects running writers).
    #[serde(serialize_with = "ser_duration")]
    pub orphan_older_than: Duration,
}

impl Default for MaintenancePolicy {
    fn default() -> Self {
        MaintenancePolicy {
            enabled: true,
            target_file_size_mb: 128,
            min_input_files: 2,
            small_file_mb: 128.0 * 0.75,
            max_manifests: 10,
            expire_older_than: Duration::from_secs(7 * 86_400),
            retain_last: 5,
            orphan_older_than: Duration::from_secs(3 * 86_400),
        }
    }
}

/// A policy as written: every key optional, so layers can be merged.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    enabled: Option<bool>,
    target_file_size_mb: Option<u64>,
    min_input_files: Option<usize>,
    small_file_mb: Option<f64>,
    max_manifests: Option<usize>,
    expire_older_than: Option<DurationText>,
    retain_last: Option<usize>,
    orphan_older_than: Option<DurationText>,
}

/// A duration as `30s`, `15m`, `12h`, `7d` or a number of seconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum DurationText {
    Seconds(u64),
    Text(String),
}

impl DurationText {
    fn parse(&self, key: &str) -> Result<Duration> {
        match self {
            DurationText::Seconds(s) => Ok(Duration::from_secs(*s)),
            DurationText::Text(t) => {
                parse_duration(t).with_context(|| format!("maintenance {key}"))
            }
        }
    }
}

/// Parse `30s`, `15m`, `12h`, `7d` (or a bare number of seconds).
pub fn parse_duration(text: &str) -> Result<Duration> {
    let t = text.trim();
    let (number, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| anyhow!("'{text}' is not a duration (use e.g. 30s, 15m, 12h, 7d)"))?;
    let unit_secs = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => bail!("'{text}' is not a duration (use e.g. 30s, 15m, 12h, 7d)"),
    };
    Ok(Duration::from_secs(n.saturating_mul(unit_secs)))
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration(*d))
}

/// `7d`, `12h`, `90s`: the largest unit that divides the duration.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    for (unit, secs) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if s > 0 && s.is_multiple_of(secs) {
            return format!("{}{unit}", s / secs);
        }
    }
    format!("{s}s")
}

impl RawPolicy {
    /// Parse a `config: maintenance: {...}` mapping.
    pub fn from_json(value: &serde_json::Value) -> Result<Self> {
        serde_json::from_value(value.clone()).map_err(|e| anyhow!("maintenance config: {e}"))
    }

    /// Read the `lake.maintenance.<key>` table properties.
    pub fn from_properties(properties: &HashMap<String, String>) -> Result<Self> {
        let mut map = serde_json::Map::new();
        for (k, v) in properties {
            if let Some(key) = k.strip_prefix(PROPERTY_PREFIX) {
                let value = match serde_json::from_str::<serde_json::Value>(v) {
                    Ok(j @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => j,
                    _ => serde_json::Value::String(v.clone()),
                };
                map.insert(key.to_string(), value);
            }
        }
        serde_json::from_value(serde_json::Value::Object(map))
            .map_err(|e| anyhow!("table properties {PROPERTY_PREFIX}*: {e}"))
    }

    /// Keys set here win over `other`'s.
    pub fn or(self, other: RawPolicy) -> RawPolicy {
        RawPolicy {
            enabled: self.enabled.or(other.enabled),
            target_file_size_mb: self.target_file_size_mb.or(other.target_file_size_mb),
            min_input_files: self.min_input_files.or(other.min_input_files),
            small_file_mb: self.small_file_mb.or(other.small_file_mb),
            max_manifests: self.max_manifests.or(other.max_manifests),
            expire_older_than: self.expire_older_than.or(other.expire_older_than),
            retain_last: self.retain_last.or(other.retain_last),
            orphan_older_than: self.orphan_older_than.or(other.orphan_older_than),
        }
    }
}

impl TryFrom<RawPolicy> for MaintenancePolicy {
    type Error = anyhow::Error;

    fn try_from(raw: RawPolicy) -> Result<Self> {
        let d = MaintenancePolicy::default();
        let target = raw.target_file_size_mb.unwrap_or(d.target_file_size_mb);
        if target == 0 {
            bail!("maintenance target_file_size_mb must be at least 1");
        }
        let small = raw.small_file_mb.unwrap_or(target as f64 * 0.75);
        if small.is_nan() || small <= 0.0 {
            bail!("maintenance small_file_mb must be positive");
        }
        let min_input_files = raw.min_input_files.unwrap_or(d.min_input_files);
        if min_input_files < 2 {
            bail!(
                "maintenance min_input_files must be at least 2 (one file alone is never compacted)"
            );
        }
        let retain_last = raw.retain_last.unwrap_or(d.retain_last);
        if retain_last == 0 {
            bail!("maintenance retain_last must be at least 1 (the current snapshot always stays)");
        }
        let max_manifests = raw.max_manifests.unwrap_or(d.max_manifests);
        if max_manifests == 0 {
            bail!("maintenance max_manifests must be at least 1");
        }
        Ok(MaintenancePolicy {
            enabled: raw.enabled.unwrap_or(d.enabled),
            target_file_size_mb: target,
            min_input_files,
            small_file_mb: small,
            max_manifests,
            expire_older_than: match &raw.expire_older_than {
                Some(t) => t.parse("expire_older_than")?,
                None => d.expire_older_than,
            },
            retain_last,
            orphan_older_than: match &raw.orphan_older_than {
                Some(t) => t.parse("orphan_older_than")?,
                None => d.orphan_older_than,
            },
        })
    }
}

impl MaintenancePolicy {
    /// The policy of a table: the model's `maintenance` config over the table's
    /// `lake.maintenance.*` properties over the defaults.
    pub fn resolve(
        model_config: Option<&serde_json::Value>,
        table: Option<&Table>,
    ) -> Result<Self> {
        let from_model = match model_config {
            Some(v) => RawPolicy::from_json(v)?,
            None => RawPolicy::default(),
        };
        let from_table = match table {
            Some(t) => RawPolicy::from_properties(t.metadata().properties())?,
            None => RawPolicy::default(),
        };
        MaintenancePolicy::try_from(from_model.or(from_table))
    }

    pub(super) fn target_bytes(&self) -> u64 {
        self.target_file_size_mb.saturating_mul(1024 * 1024)
    }

    pub(super) fn small_bytes(&self) -> u64 {
        (self.small_file_mb * MB) as u64
    }
}
