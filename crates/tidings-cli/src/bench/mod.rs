//! `tidings bench`: tidings measured beside the broker's own client, in the same run.
//!
//! For each transport the run measures, on the raw client and on tidings alike, with the
//! ~500-byte order of [`event`]:
//!
//! - **publish**: durable publishing, every confirm awaited, in batches of `--batch`;
//! - **consume**: consuming and acknowledging the backlog the publish left;
//! - **end-to-end**: publisher and consumer running together;
//! - **latency**: publish-to-handled p50/p99/p999 at a fixed offered rate (default half the
//!   slower side's end-to-end maximum);
//! - **consumer memory**: the peak RSS of a consumer process draining a backlog of
//!   `--backlog` events (brokers and stores only).
//!
//! Throughput rounds alternate which side goes first, so that the machine's and the broker's
//! swings hit both alike, and the table gives medians and the median per-round ratio
//! tidings/raw. What each raw side does is in [`raw`].

mod chart;
mod event;
mod raw;
mod report;
mod run;
mod side;
mod stats;
mod tally;
mod tidings_side;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};

use self::event::Orders;
use self::report::{Latency, Machine, Memory, Paired, Percentiles, Report, TransportReport};
use self::side::{Pair, Side};

/// The transports `--all` measures, with the variables that override their URLs.
const LOCAL: [(&str, &str); 6] = [
    ("", "memory://"),
    ("", "sqlite://"),
    ("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test"),
    ("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
    ("NATS_URL", "nats://127.0.0.1:4222"),
    ("REDIS_URL", "redis://127.0.0.1:6379"),
];

/// Options of `tidings bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// A transport to measure (repeat for several): memory://, sqlite://[DIR] (a temporary
    /// directory by default), postgres://…, amqp://…, nats://…, redis://…
    #[arg(long = "url", default_value = "sqlite://")]
    urls: Vec<String>,
    /// Measure every local transport: memory, SQLite, and PostgreSQL, RabbitMQ, NATS and
    /// Redis at their default local URLs (or DATABASE_URL, RABBITMQ_URL, NATS_URL, REDIS_URL).
    #[arg(long)]
    all: bool,
    /// Events per round of the throughput cases.
    #[arg(long, default_value_t = 20_000)]
    events: u64,
    /// Rounds of each throughput case.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Events per publish call.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Offered rate of the latency run, events per second (default: half the slower side's
    /// end-to-end throughput).
    #[arg(long)]
    rate: Option<f64>,
    /// How long the latency run offers events; 0s skips it.
    #[arg(long, default_value = "10s")]
    latency_for: humantime::Duration,
    /// Backlog the consumer memory run drains, in a process of its own; 0 skips it.
    #[arg(long, default_value_t = 1_000_000)]
    backlog: u64,
    /// Prints the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also draws the throughputs and latencies as an SVG chart at this path.
    #[arg(long)]
    chart: Option<PathBuf>,
    /// Runs as the consumer of the memory run (internal).
    #[arg(long, hide = true, value_parser = ["raw", "tidings"])]
    memory_run: Option<String>,
}

/// Runs `tidings bench`.
pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.batch > 0, "--batch must be at least 1");
    anyhow::ensure!(args.rounds > 0, "--rounds must be at least 1");
    if let Some(side) = &args.memory_run {
        return memory_run(&args.urls[0], side, args.backlog).await;
    }
    let urls: Vec<String> = if args.all {
        LOCAL
            .iter()
            .map(|(var, default)| {
                std::env::var(var)
                    .ok()
                    .filter(|_| !var.is_empty())
                    .unwrap_or_else(|| (*default).to_owned())
            })
            .collect()
    } else {
        args.urls.clone()
    };
    let progress = ProgressBar::new_spinner();
    progress.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed}] {msg}").expect("a valid template"),
    );
    progress.enable_steady_tick(Duration::from_millis(120));
    let mut report = Report {
        machine: Machine::this(),
        events: args.events,
        rounds: args.rounds,
        batch: args.batch,
        transports: Vec::new(),
    };
    // Each transport's rows go to standard error as soon as it is measured, and a transport
    // that fails does not cost the others: a long run cut short keeps what it measured.
    let mut failed = Vec::new();
    for url in &urls {
        match measure(&args, url, &progress).await {
            Ok(measured) => {
                // On standard error, so that `--json` output stays JSON.
                print_above(&progress, measured.rows().trim_end());
                report.transports.push(measured);
            }
            Err(error) => {
                let redacted = tidings::broker_url::BrokerUrl::new(url).redacted();
                print_above(&progress, &format!("{redacted}: not measured: {error:#}"));
                failed.push(redacted);
            }
        }
    }
    progress.finish_and_clear();
    if !report.transports.is_empty() {
        if let Some(path) = &args.chart {
            chart::draw(&report, path).with_context(|| format!("drawing {}", path.display()))?;
        }
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", report.table());
        }
    }
    anyhow::ensure!(
        failed.is_empty(),
        "{} not measured: {}",
        if failed.len() == 1 {
            "one transport was"
        } else {
            "transports were"
        },
        failed.join(", ")
    );
    Ok(())
}

/// Prints `text` on standard error above the spinner, or on a line of its own when standard
/// error is not a terminal (a CI log, where the spinner is hidden).
fn print_above(progress: &ProgressBar, text: &str) {
    if progress.is_hidden() {
        eprintln!("{text}");
    } else {
        progress.println(text);
    }
}

/// Sets up the transport `url` names beside its raw client and measures both.
async fn measure(
    args: &BenchArgs,
    url: &str,
    progress: &ProgressBar,
) -> anyhow::Result<TransportReport> {
    let pair = raw::pair(url, true).await.with_context(|| {
        format!(
            "setting up {}",
            tidings::broker_url::BrokerUrl::new(url).redacted()
        )
    })?;
    Bench {
        args,
        pair: &pair,
        progress,
        seq: std::cell::Cell::new(0),
    }
    .measure()
    .await
    .with_context(|| format!("measuring {}", pair.url))
}

/// One transport's run.
struct Bench<'a> {
    args: &'a BenchArgs,
    pair: &'a Pair,
    progress: &'a ProgressBar,
    /// The next order's sequence number: every event of a run is distinct, as the inbox
    /// would skip a repeated one.
    seq: std::cell::Cell<u64>,
}

/// How long a consumer may go without handling anything before the run gives up on it.
const STALL: Duration = Duration::from_secs(60);

impl Bench<'_> {
    fn orders(&self, count: u64) -> Orders {
        let from = self.seq.get();
        self.seq.set(from + count);
        Orders::new(from, count)
    }

    /// Shows what the run is doing: on the spinner, or as a line of its own when standard
    /// error is not a terminal (a CI log).
    fn say(&self, what: impl std::fmt::Display) {
        let line = format!("{}: {what}", self.pair.transport);
        if self.progress.is_hidden() {
            eprintln!("{line}");
        }
        self.progress.set_message(line);
    }

    fn sides(&self, round: usize) -> [(&'static str, &dyn Side); 2] {
        let raw = ("raw", &*self.pair.raw);
        let tidings = ("tidings", &*self.pair.tidings);
        if round.is_multiple_of(2) {
            [raw, tidings]
        } else {
            [tidings, raw]
        }
    }

    async fn measure(&self) -> anyhow::Result<TransportReport> {
        let (events, batch) = (self.args.events, self.args.batch);
        self.tidy().await?;
        self.say("warming up");
        for (_, side) in self.sides(0) {
            let orders = self.orders(batch as u64);
            run::publish(side, &orders, batch).await?;
            run::consume(side, orders.len() as u64, STALL).await?;
        }
        let rate = |spent: Duration| events as f64 / spent.as_secs_f64();
        let (mut publish, mut consume) = (Paired::default(), Paired::default());
        for round in 0..self.args.rounds {
            let mut figures = [(0.0, 0.0); 2];
            for (name, side) in self.sides(round) {
                self.say(format!(
                    "publish and consume, round {}/{}, {name}",
                    round + 1,
                    self.args.rounds
                ));
                let orders = self.orders(events);
                let start = Instant::now();
                run::publish(side, &orders, batch).await?;
                let published = rate(start.elapsed());
                let consumed = rate(run::consume(side, events, STALL).await?);
                figures[usize::from(name == "tidings")] = (published, consumed);
            }
            publish.push(figures[0].0, figures[1].0);
            consume.push(figures[0].1, figures[1].1);
        }
        let mut end_to_end = Paired::default();
        for round in 0..self.args.rounds {
            let mut figures = [0.0; 2];
            for (name, side) in self.sides(round) {
                self.say(format!(
                    "end to end, round {}/{}, {name}",
                    round + 1,
                    self.args.rounds
                ));
                let orders = self.orders(events);
                figures[usize::from(name == "tidings")] =
                    rate(run::end_to_end(side, &orders, batch, STALL).await?);
            }
            end_to_end.push(figures[0], figures[1]);
        }
        let latency = if self.args.latency_for.is_zero() {
            None
        } else {
            let rate = self
                .args
                .rate
                .unwrap_or(0.5 * end_to_end.raw_median.min(end_to_end.tidings_median));
            Some(self.latency(rate).await?)
        };
        let memory = if self.args.backlog == 0 || self.pair.transport == "memory" {
            None
        } else {
            Some(self.memory().await?)
        };
        Ok(TransportReport {
            transport: self.pair.transport,
            url: self.pair.url.clone(),
            raw_client: self.pair.raw_client,
            publish,
            consume,
            end_to_end,
            latency,
            memory,
        })
    }

    /// Both sides' [`Side::tidy`](side::Side::tidy), before the first case. Not before each
    /// one: tried, it made the raw PostgreSQL side's end-to-end claims run for seconds each
    /// (seen in `pg_stat_activity`; the cause is not pinned down), which measures nothing.
    async fn tidy(&self) -> anyhow::Result<()> {
        self.pair.raw.tidy().await?;
        self.pair.tidings.tidy().await
    }

    async fn latency(&self, rate: f64) -> anyhow::Result<Latency> {
        let count = ((rate * self.args.latency_for.as_secs_f64()) as u64).max(1);
        let mut figures = Vec::new();
        for (name, side) in [("raw", &self.pair.raw), ("tidings", &self.pair.tidings)] {
            self.say(format!(
                "latency at {rate:.0}/s for {}, {name}",
                self.args.latency_for
            ));
            let orders = Arc::new(self.orders(count));
            let latencies = run::latencies(side.clone(), orders, rate, STALL).await?;
            figures.push(Percentiles::of(&latencies));
        }
        let tidings = figures.pop().expect("two runs");
        let raw = figures.pop().expect("two runs");
        Ok(Latency { rate, raw, tidings })
    }

    /// Fills each side's backlog, then drains it in a process of its own and reads that
    /// process's peak RSS.
    async fn memory(&self) -> anyhow::Result<Memory> {
        let backlog = self.args.backlog;
        let mut figures = Vec::new();
        for (name, side) in [("raw", &*self.pair.raw), ("tidings", &*self.pair.tidings)] {
            let mut filled = 0;
            while filled < backlog {
                self.say(format!(
                    "filling a backlog of {backlog} for {name}: {filled}"
                ));
                let orders = self.orders((backlog - filled).min(10_000));
                run::publish(side, &orders, self.args.batch).await?;
                filled += orders.len() as u64;
            }
            self.say(format!(
                "draining a backlog of {backlog} in a process, {name}"
            ));
            figures.push(self.drain_in_a_process(name).await?);
        }
        Ok(Memory {
            backlog,
            raw_peak_rss_mib: figures[0].peak_rss_kib as f64 / 1024.0,
            tidings_peak_rss_mib: figures[1].peak_rss_kib as f64 / 1024.0,
            raw_secs: figures[0].secs,
            tidings_secs: figures[1].secs,
        })
    }

    async fn drain_in_a_process(&self, side: &str) -> anyhow::Result<Drained> {
        let exe = std::env::current_exe().context("finding this executable")?;
        let output = tokio::process::Command::new(exe)
            .args(["bench", "--memory-run", side, "--url", &self.pair.reopen])
            .args(["--backlog", &self.args.backlog.to_string()])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .output()
            .await
            .context("starting the consumer process")?;
        anyhow::ensure!(
            output.status.success(),
            "the {side} consumer process failed ({})",
            output.status
        );
        serde_json::from_slice(&output.stdout).context("reading the consumer process's figures")
    }
}

/// What the consumer process of the memory run reports.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Drained {
    peak_rss_kib: u64,
    secs: f64,
}

/// The consumer process: drains `backlog` events on one side and prints its peak RSS.
async fn memory_run(url: &str, side: &str, backlog: u64) -> anyhow::Result<()> {
    let pair = raw::pair(url, false).await?;
    let side = if side == "raw" {
        pair.raw
    } else {
        pair.tidings
    };
    let start = Instant::now();
    run::consume(&*side, backlog, STALL).await?;
    let drained = Drained {
        peak_rss_kib: peak_rss_kib()?,
        secs: start.elapsed().as_secs_f64(),
    };
    println!("{}", serde_json::to_string(&drained)?);
    Ok(())
}

/// This process's peak resident set (`VmHWM`), in KiB.
fn peak_rss_kib() -> anyhow::Result<u64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .context("no VmHWM in /proc/self/status")
}
