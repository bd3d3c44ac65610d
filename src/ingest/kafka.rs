//! The Kafka source: topics read with rdkafka (bundled librdkafka), partitions assigned by a
//! consumer group (or listed in `partitions`), offsets kept in the raw table, not in Kafka.
//! `--once` does not join the group: it assigns itself every partition of the topics (from
//! the broker's metadata), so a member that died and still holds partitions in the group
//! until its session times out cannot make it skip them.
//!
//! Each partition's next offset is a stream position (`topic/partition`), committed with the
//! rows it covers. The first message of a partition after a start, a rebalance or a reset
//! is checked against the stored offset: a stored offset outside the broker's range (below
//! the low watermark: the data is gone; above the high one: the topic went backwards) is an
//! error, and a message at another offset makes the consumer seek to the stored one. Kafka's
//! own group offsets are never committed, so a group member always starts where the table
//! says.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::records::{Coordinates, RawRecord, SourceKind};
use super::source::{Position, Positions, Source};

/// `kafka://host:port[,host:port]/topic[,topic]`.
pub fn parse_url(url: &str) -> Result<(String, Vec<String>)> {
    let rest = url.strip_prefix("kafka://").ok_or_else(|| anyhow!("`{url}` is not a kafka:// URL"))?;
    let (brokers, topics) = rest
        .split_once('/')
        .ok_or_else(|| anyhow!("`{url}`: give the topics after the brokers, e.g. kafka://localhost:9092/orders"))?;
    let topics: Vec<String> = topics.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_string).collect();
    if brokers.is_empty() || topics.is_empty() {
        bail!("`{url}`: expected kafka://host:port/topic[,topic]");
    }
    Ok((brokers.to_string(), topics))
}

/// A stored next offset must lie within the broker's offsets of the partition.
fn check_range(stream: &str, next: i64, low: i64, high: i64) -> Result<()> {
    if next < low || next > high {
        bail!(
            "{stream}: the stored next offset {next} is outside the broker's range {low}..{high} \
             (records were deleted, or the topic was recreated); nothing is skipped silently: \
             fix the topic or move the table aside"
        );
    }
    Ok(())
}

/// The partition's low and high watermarks as the last fetch response reported them (no
/// network call; `None` before the first fetch). Preferred over a ListOffsets request, which
/// some Kafka-protocol brokers answer from a lagging view.
fn cached_watermarks(consumer: &StreamConsumer, topic: &str, partition: i32) -> Option<(i64, i64)> {
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer is live for the consumer's lifetime; the function only reads
    // librdkafka's cached offsets into the two out-parameters.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some((low.max(0), high))
}

/// Every partition of `topics`, from the broker's metadata.
fn all_partitions(consumer: &StreamConsumer, brokers: &str, topics: &[String]) -> Result<Vec<(String, i32)>> {
    let mut out = Vec::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(30))
            .with_context(|| format!("cannot read the partitions of topic `{topic}` from the Kafka brokers {brokers}"))?;
        let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
            bail!("the Kafka brokers {brokers} did not describe topic `{topic}`");
        };
        if let Some(error) = found.error() {
            bail!("topic `{topic}` on the Kafka brokers {brokers}: {}", rdkafka::error::RDKafkaErrorCode::from(error));
        }
        if found.partitions().is_empty() {
            bail!("topic `{topic}` on the Kafka brokers {brokers} has no partitions");
        }
        out.extend(found.partitions().iter().map(|p| (topic.clone(), p.id())));
    }
    Ok(out)
}

/// Bytes as text: copied as they are when they are UTF-8 (the usual case), else with the bad
/// sequences replaced.
fn text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// Reads messages from Kafka.
pub struct KafkaSource {
    consumer: StreamConsumer,
    topics: Vec<String>,
    positions: Positions,
    /// Per partition: the offset the consumer was last sent to (partitions checked against the
    /// broker's range since the last reset).
    checked: HashMap<(String, i32), i64>,
    poll: Duration,
    started: std::time::Instant,
}

impl KafkaSource {
    /// Connects; with `partitions`, those partitions of every topic are assigned directly;
    /// with `all` (`--once`), every partition of every topic; else the consumer joins `group`
    /// and gets partitions from it.
    pub fn connect(
        url: &str,
        group: &str,
        partitions: Option<&[i32]>,
        all: bool,
        properties: &std::collections::BTreeMap<String, String>,
    ) -> Result<Self> {
        let (brokers, topics) = parse_url(url)?;
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("session.timeout.ms", "10000")
            // librdkafka postpones a partition's next fetch by this long once its local queue is
            // full (default 1 s). A lane fills the queue while it converts a batch and drains it
            // at once after, so the default stalled every few batches: 250,000 Stripe events
            // from one partition took 10.3 s instead of 4.4 s.
            .set("fetch.queue.backoff.ms", "10");
        for (k, v) in properties {
            config.set(k, v);
        }
        let consumer: StreamConsumer = config.create().context("cannot create the Kafka consumer")?;
        let listed: Option<Vec<(String, i32)>> = match partitions {
            Some(list) => Some(topics.iter().flat_map(|t| list.iter().map(move |p| (t.clone(), *p))).collect()),
            None if all => Some(all_partitions(&consumer, &brokers, &topics)?),
            None => None,
        };
        match listed {
            Some(list) => {
                let mut tpl = TopicPartitionList::new();
                for (t, p) in &list {
                    tpl.add_partition_offset(t, *p, Offset::Beginning)?;
                }
                consumer.assign(&tpl).context("cannot assign the Kafka partitions")?;
            }
            None => {
                let names: Vec<&str> = topics.iter().map(String::as_str).collect();
                consumer.subscribe(&names).context("cannot subscribe to the Kafka topics")?;
            }
        }
        Ok(Self { consumer, topics, positions: Positions::new(), checked: HashMap::new(), poll: Duration::from_millis(200), started: std::time::Instant::now() })
    }

    /// Whether the message at `offset` is the next one to hand out. A message past the
    /// stored offset makes the consumer seek back to it (once: a gap that is still there after
    /// the seek is real, e.g. compaction); the first such check of a partition also verifies
    /// that the stored offset is within the broker's range.
    fn accept(&mut self, topic: &str, partition: i32, offset: i64) -> Result<bool> {
        let stream = format!("{topic}/{partition}");
        let Some(expected) = self.positions.get(&stream).map(|p| p.consumed as i64) else {
            return Ok(true); // Nothing stored: the partition is read from its beginning.
        };
        if offset == expected {
            return Ok(true);
        }
        if !self.checked.contains_key(&(topic.to_string(), partition))
            && let Some((low, high)) = cached_watermarks(&self.consumer, topic, partition)
        {
            check_range(&stream, expected, low, high)?;
        }
        let sought = self.checked.get(&(topic.to_string(), partition)).copied();
        if offset > expected && sought == Some(expected) {
            return Ok(true); // A real gap in the partition.
        }
        if sought != Some(expected) {
            self.consumer
                .seek(topic, partition, Offset::Offset(expected), Duration::from_secs(10))
                .with_context(|| format!("cannot seek {stream} to {expected}"))?;
            self.checked.insert((topic.to_string(), partition), expected);
        }
        Ok(false)
    }
}

#[async_trait::async_trait]
impl Source for KafkaSource {
    fn kind(&self) -> SourceKind {
        SourceKind::Kafka
    }

    async fn next_record(&mut self) -> Result<Option<RawRecord>> {
        loop {
            // The message is borrowed from librdkafka's buffer: its payload is copied once.
            let (topic, partition, offset, key, payload, received_at) = {
                let message = match tokio::time::timeout(self.poll, self.consumer.recv()).await {
                    Err(_) => {
                        tracing::debug!("Kafka ({}): no message within {:?}", self.topics.join(","), self.poll);
                        return Ok(None);
                    }
                    Ok(Err(e)) => return Err(anyhow!("Kafka ({}): {e}", self.topics.join(","))),
                    Ok(Ok(m)) => m,
                };
                let received_at = message
                    .timestamp()
                    .to_millis()
                    .map(|ms| ms * 1000)
                    .unwrap_or_else(|| chrono::Utc::now().timestamp_micros());
                let payload = message.payload().map(text).unwrap_or_default();
                (message.topic().to_string(), message.partition(), message.offset(), message.key().map(text), payload, received_at)
            };
            if !self.accept(&topic, partition, offset)? {
                continue;
            }
            let at = Coordinates::Kafka { topic, partition, offset, key };
            self.positions.insert(at.stream(), Position::at(at.consumed()));
            return Ok(Some(RawRecord { payload, at, received_at, event_type: None }));
        }
    }

    fn positions(&self) -> &Positions {
        &self.positions
    }

    fn lag(&self) -> std::collections::BTreeMap<String, i64> {
        let mut lag = std::collections::BTreeMap::new();
        if let Ok(assigned) = self.consumer.assignment() {
            for e in assigned.elements() {
                if let Some((low, high)) = cached_watermarks(&self.consumer, e.topic(), e.partition()) {
                    let stream = format!("{}/{}", e.topic(), e.partition());
                    let next = self.positions.get(&stream).map_or(low, |p| p.consumed as i64);
                    lag.insert(stream, (high - next).max(0));
                }
            }
        }
        lag
    }

    async fn caught_up(&mut self) -> Result<bool> {
        let assigned = self.consumer.assignment().context("cannot read the Kafka assignment")?;
        if assigned.count() == 0 {
            if self.started.elapsed() > Duration::from_secs(60) {
                bail!("no partition of {} was assigned within 60 s (is the consumer group stuck?)", self.topics.join(","));
            }
            return Ok(false);
        }
        for e in assigned.elements() {
            let Some((low, high)) = cached_watermarks(&self.consumer, e.topic(), e.partition()) else {
                return Ok(false); // Not fetched yet.
            };
            let stream = format!("{}/{}", e.topic(), e.partition());
            let stored = self.positions.get(&stream).map(|p| p.consumed as i64);
            if let Some(next) = stored {
                check_range(&stream, next, low, high)?;
            }
            if stored.unwrap_or(low) < high {
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn reset(&mut self, positions: Positions) -> Result<()> {
        // Partitions already being read go back to the stored offsets at once; the others are
        // checked when their first message arrives.
        self.checked.clear();
        self.positions = positions.clone();
        if let Ok(assigned) = self.consumer.assignment() {
            for e in assigned.elements() {
                let stream = format!("{}/{}", e.topic(), e.partition());
                let target = positions.get(&stream).map_or(Offset::Beginning, |p| Offset::Offset(p.consumed as i64));
                // A partition not fetching yet cannot seek; its first message is checked instead.
                let _ = self.consumer.seek(e.topic(), e.partition(), target, Duration::from_secs(5));
            }
        }
        self.positions = positions;
        Ok(())
    }
}
