//! What a run found: per transport, each case measured on the raw client and on tidings,
//! printed as a table or written as JSON.

use serde::Serialize;

use super::stats;

/// A whole run.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) machine: Machine,
    /// Events per round of the throughput cases.
    pub(crate) events: u64,
    pub(crate) rounds: usize,
    /// Events per publish call.
    pub(crate) batch: usize,
    pub(crate) transports: Vec<TransportReport>,
}

/// Where the run ran.
#[derive(Debug, Serialize)]
pub(crate) struct Machine {
    pub(crate) cpu: String,
    pub(crate) cores: usize,
    pub(crate) memory_gib: f64,
    pub(crate) tidings: &'static str,
}

impl Machine {
    /// This machine, as `/proc` describes it.
    pub(crate) fn this() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let kib: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        Self {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            memory_gib: (kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            tidings: env!("CARGO_PKG_VERSION"),
        }
    }
}

/// One transport's figures.
#[derive(Debug, Serialize)]
pub(crate) struct TransportReport {
    pub(crate) transport: &'static str,
    pub(crate) url: String,
    pub(crate) raw_client: &'static str,
    /// Durable publish, confirms awaited, events per second.
    pub(crate) publish: Paired,
    /// Consume and acknowledge a waiting backlog, events per second.
    pub(crate) consume: Paired,
    /// Publisher and consumer together, events per second.
    pub(crate) end_to_end: Paired,
    pub(crate) latency: Option<Latency>,
    pub(crate) memory: Option<Memory>,
}

/// Throughputs of one case, a pair per round.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Paired {
    pub(crate) raw: Vec<f64>,
    pub(crate) tidings: Vec<f64>,
    pub(crate) raw_median: f64,
    pub(crate) tidings_median: f64,
    /// Median and quartiles of the per-round ratio tidings/raw.
    pub(crate) ratio_median: f64,
    pub(crate) ratio_q1: f64,
    pub(crate) ratio_q3: f64,
}

impl Paired {
    /// Records one round.
    pub(crate) fn push(&mut self, raw: f64, tidings: f64) {
        self.raw.push(raw);
        self.tidings.push(tidings);
        let ratios: Vec<f64> = self
            .raw
            .iter()
            .zip(&self.tidings)
            .map(|(r, t)| t / r)
            .collect();
        self.raw_median = stats::median(&self.raw);
        self.tidings_median = stats::median(&self.tidings);
        self.ratio_median = stats::median(&ratios);
        self.ratio_q1 = stats::quantile(&ratios, 0.25);
        self.ratio_q3 = stats::quantile(&ratios, 0.75);
    }
}

/// Publish-to-handled latency at a fixed offered rate.
#[derive(Debug, Serialize)]
pub(crate) struct Latency {
    /// Events offered per second.
    pub(crate) rate: f64,
    pub(crate) raw: Percentiles,
    pub(crate) tidings: Percentiles,
}

/// Percentiles of a latency run, in milliseconds.
#[derive(Debug, Serialize)]
pub(crate) struct Percentiles {
    pub(crate) samples: usize,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) p999_ms: f64,
    pub(crate) max_ms: f64,
}

impl Percentiles {
    pub(crate) fn of(latencies: &[std::time::Duration]) -> Self {
        let mut ms: Vec<f64> = latencies.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        Self {
            samples: ms.len(),
            p50_ms: stats::at(&ms, 0.5),
            p99_ms: stats::at(&ms, 0.99),
            p999_ms: stats::at(&ms, 0.999),
            max_ms: stats::at(&ms, 1.0),
        }
    }
}

/// Peak resident memory of a consumer process draining a backlog.
#[derive(Debug, Serialize)]
pub(crate) struct Memory {
    pub(crate) backlog: u64,
    pub(crate) raw_peak_rss_mib: f64,
    pub(crate) tidings_peak_rss_mib: f64,
    /// Seconds each took to drain the backlog.
    pub(crate) raw_secs: f64,
    pub(crate) tidings_secs: f64,
}

fn thousands(n: f64) -> String {
    let digits = format!("{:.0}", n);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl Report {
    /// The table `tidings bench` prints.
    pub(crate) fn table(&self) -> String {
        let mut out = self.header();
        for t in &self.transports {
            out.push_str(&t.rows());
        }
        out
    }

    /// The lines above the rows: the run and the column names.
    pub(crate) fn header(&self) -> String {
        use std::fmt::Write as _;

        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} events per round, {} rounds, batches of {}; medians; {} ({} cores, {} GiB)",
            thousands(self.events as f64),
            self.rounds,
            self.batch,
            self.machine.cpu,
            self.machine.cores,
            self.machine.memory_gib
        );
        let _ = writeln!(
            out,
            "{:<10} {:<16} {:>14} {:>14} {:>22}",
            "transport", "case", "raw", "tidings", "tidings/raw (q1–q3)"
        );
        out
    }
}

impl TransportReport {
    /// This transport's rows of the table.
    pub(crate) fn rows(&self) -> String {
        use std::fmt::Write as _;

        let mut out = String::new();
        let t = self;
        for (case, paired) in [
            ("publish", &t.publish),
            ("consume", &t.consume),
            ("end-to-end", &t.end_to_end),
        ] {
            let _ = writeln!(
                out,
                "{:<10} {:<16} {:>12}/s {:>12}/s {:>9.0}% ({:.0}–{:.0}%)",
                t.transport,
                case,
                thousands(paired.raw_median),
                thousands(paired.tidings_median),
                paired.ratio_median * 100.0,
                paired.ratio_q1 * 100.0,
                paired.ratio_q3 * 100.0
            );
        }
        if let Some(l) = &t.latency {
            for (case, raw, tidings) in [
                ("latency p50", l.raw.p50_ms, l.tidings.p50_ms),
                ("latency p99", l.raw.p99_ms, l.tidings.p99_ms),
                ("latency p999", l.raw.p999_ms, l.tidings.p999_ms),
            ] {
                let _ = writeln!(
                    out,
                    "{:<10} {:<16} {:>11.2} ms {:>11.2} ms {:>11} at {}/s",
                    t.transport,
                    case,
                    raw,
                    tidings,
                    "",
                    thousands(l.rate)
                );
            }
        }
        if let Some(m) = &t.memory {
            let _ = writeln!(
                out,
                "{:<10} {:<16} {:>10.1} MiB {:>10.1} MiB {:>9.0}% backlog {}",
                t.transport,
                "consumer RSS",
                m.raw_peak_rss_mib,
                m.tidings_peak_rss_mib,
                m.tidings_peak_rss_mib / m.raw_peak_rss_mib * 100.0,
                thousands(m.backlog as f64)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ratio_is_the_median_of_per_round_ratios() {
        let mut paired = Paired::default();
        paired.push(100.0, 90.0);
        paired.push(200.0, 100.0);
        paired.push(50.0, 50.0);
        assert_eq!(paired.raw_median, 100.0);
        assert_eq!(paired.tidings_median, 90.0);
        assert_eq!(paired.ratio_median, 0.9);
        assert_eq!((paired.ratio_q1, paired.ratio_q3), (0.9, 1.0));
    }

    #[test]
    fn counts_are_printed_with_thousands_separators() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
    }
}
