//! `tidings bench`: every case measured on both sides, the report and the chart, and the
//! consumer memory run in a process of its own.

use std::process::Command;

use serde_json::Value;

fn bench(args: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .arg("bench")
        .args(args)
        .arg("--json")
        .output()
        .expect("tidings bench runs");
    assert!(
        output.status.success(),
        "tidings bench failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("a JSON report")
}

/// Every round of every throughput case has a positive figure on both sides, and the ratio
/// is the median of the per-round ratios.
fn assert_measured(transport: &Value, rounds: usize) {
    let name = transport["transport"].as_str().expect("a name");
    for case in ["publish", "consume", "end_to_end"] {
        let figures = &transport[case];
        for side in ["raw", "tidings"] {
            let rates = figures[side].as_array().expect("figures per round");
            assert_eq!(rates.len(), rounds, "{name} {case} {side}");
            assert!(
                rates.iter().all(|r| r.as_f64().is_some_and(|r| r > 0.0)),
                "{name} {case} {side}: {rates:?}"
            );
        }
        let ratio = figures["ratio_median"].as_f64().expect("a ratio");
        assert!(ratio > 0.0, "{name} {case}: ratio {ratio}");
    }
}

/// In memory: throughput of both sides, latency percentiles at the rate asked for, with as
/// many samples as events offered, and a chart naming the transport.
#[test]
fn bench_measures_every_case_beside_the_raw_client_and_draws_them() {
    let dir = tempfile::tempdir().expect("dir");
    let chart = dir.path().join("bench.svg");
    let report = bench(&[
        "--url",
        "memory://",
        "--events",
        "2000",
        "--rounds",
        "2",
        "--rate",
        "2000",
        "--latency-for",
        "1s",
        "--backlog",
        "0",
        "--chart",
        chart.to_str().expect("utf-8"),
    ]);
    let memory = &report["transports"][0];
    assert_eq!(memory["transport"], "memory");
    assert_eq!(memory["raw_client"], "tokio mpsc");
    assert_measured(memory, 2);
    let latency = &memory["latency"];
    assert_eq!(latency["rate"], 2000.0);
    for side in ["raw", "tidings"] {
        let p = &latency[side];
        assert_eq!(p["samples"], 2000, "{side}");
        let (p50, p99, p999) = (
            p["p50_ms"].as_f64().expect("p50"),
            p["p99_ms"].as_f64().expect("p99"),
            p["p999_ms"].as_f64().expect("p999"),
        );
        assert!(0.0 < p50 && p50 <= p99 && p99 <= p999, "{side}: {p}");
    }
    assert!(memory["memory"].is_null(), "nothing to drain in memory");
    let svg = std::fs::read_to_string(&chart).expect("the chart");
    assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
    for text in ["memory", "raw client", "tidings", "Throughput", "latency"] {
        assert!(svg.contains(text), "the chart names {text}");
    }
}

/// The consumer memory run drains the backlog in a process of its own on each side, and a
/// tidings consumer's peak memory does not grow with the backlog: it holds what the prefetch
/// lets through, not what waits.
#[test]
fn consumer_memory_is_bounded_by_the_prefetch_not_by_the_backlog() {
    let peak = |backlog: &str| {
        let report = bench(&[
            "--url",
            "sqlite://",
            "--events",
            "500",
            "--rounds",
            "1",
            "--latency-for",
            "0s",
            "--backlog",
            backlog,
        ]);
        let sqlite = &report["transports"][0];
        assert_measured(sqlite, 1);
        assert!(sqlite["latency"].is_null(), "--latency-for 0s skips it");
        let memory = &sqlite["memory"];
        assert_eq!(memory["backlog"].as_u64(), backlog.parse().ok());
        for side in ["raw", "tidings"] {
            let mib = memory[format!("{side}_peak_rss_mib")]
                .as_f64()
                .expect("a peak");
            assert!(mib > 1.0, "{side}: {mib} MiB");
        }
        memory["tidings_peak_rss_mib"].as_f64().expect("a peak")
    };
    let (small, large) = (peak("2000"), peak("40000"));
    // 40,000 events of ~500 bytes would be 20 MiB held at once, before any decoding.
    assert!(
        large < small * 1.5 + 4.0,
        "peak RSS {small:.1} MiB with a backlog of 2,000, {large:.1} MiB with 40,000"
    );
}

/// Each broker beside its raw client: lapin, async-nats, redis and sqlx on PostgreSQL each
/// publish and consume the orders, and so does tidings on the same broker.
#[test]
fn bench_measures_each_broker_beside_its_raw_client() {
    let brokers = [
        (
            "RabbitMQ",
            "127.0.0.1:5672",
            "amqp://guest:guest@127.0.0.1:5672/%2f",
        ),
        ("NATS", "127.0.0.1:4222", "nats://127.0.0.1:4222"),
        ("Redis", "127.0.0.1:6379", "redis://127.0.0.1:6379"),
        (
            "PostgreSQL",
            "127.0.0.1:5432",
            "postgres://postgres@127.0.0.1:5432/test",
        ),
    ];
    let mut args = Vec::new();
    for (name, address, url) in brokers {
        if let Err(error) = std::net::TcpStream::connect(address) {
            return tidings_testkit::service::unavailable(name, &error);
        }
        args.extend(["--url", url]);
    }
    args.extend([
        "--events",
        "1000",
        "--rounds",
        "1",
        "--rate",
        "500",
        "--latency-for",
        "1s",
        "--backlog",
        "0",
    ]);
    let report = bench(&args);
    let transports = report["transports"].as_array().expect("transports");
    let names: Vec<&str> = transports
        .iter()
        .filter_map(|t| t["transport"].as_str())
        .collect();
    assert_eq!(names, ["amqp", "nats", "redis", "postgres"]);
    for transport in transports {
        assert_measured(transport, 1);
        for side in ["raw", "tidings"] {
            assert_eq!(transport["latency"][side]["samples"], 500);
        }
        let url = transport["url"].as_str().expect("a url");
        assert!(!url.contains("guest:guest"), "the report redacts {url}");
    }
}
