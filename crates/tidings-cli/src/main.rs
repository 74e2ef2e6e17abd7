//! The `tidings` command.

mod bench;
mod config;
mod demo;
mod dlq;
mod publish;
mod schema;
mod serve;
mod tail;
mod telemetry;
mod topology;
mod transport;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc rather than the system allocator: a bus allocates and frees small buffers on one
/// thread and another all the time, which glibc's malloc serves with lock contention and
/// consolidation passes (40% of the in-memory benchmark's samples under perf).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// tidings: a domain event bus.
#[derive(Debug, Parser)]
#[command(name = "tidings", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measures tidings beside the broker's own client in the same run: durable publish,
    /// consume-and-ack and end-to-end throughput, latency percentiles at a fixed rate, and a
    /// consumer's peak memory with a large backlog; prints a table (or `--json`) with the
    /// ratios tidings/raw, and draws a chart with `--chart`.
    Bench(bench::BenchArgs),
    /// Runs the bus end to end on the embedded default and narrates what happens: events
    /// published and handled, fan-out by pattern, a failing handler retried with backoff and
    /// dead-lettered, the dead letter inspected and replayed.
    Demo(demo::DemoArgs),
    /// Prints a completion script for a shell: `tidings completions bash >
    /// /etc/bash_completion.d/tidings`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Lists, shows, replays and purges a subscription's dead letters.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// Publishes one event (data from a file or standard input) and waits for the
    /// transport's confirm.
    Publish(publish::PublishArgs),
    /// Checks schema directories against a committed snapshot (breaking changes exit 1), or
    /// exports the AsyncAPI document of `tidings serve`.
    #[command(subcommand)]
    Schema(schema::SchemaCommand),
    /// Runs the bus as a service: the HTTP gateway on the embedded store, or on the
    /// transport `--url` (or `TIDINGS_URL`) names. Stops cleanly on SIGTERM or SIGINT.
    Serve(serve::ServeArgs),
    /// Prints the events published to topics matching the patterns, as they come (readable,
    /// or `--json` lines), under a temporary subscription removed when it stops.
    Tail(tail::TailArgs),
    /// Tells whether a topic pattern matches a topic, with RabbitMQ topic-exchange semantics.
    Match {
        /// The pattern, e.g. `order.*` or `product.#`.
        pattern: String,
        /// The topic, e.g. `order.created`.
        topic: String,
    },
    /// Plans or applies a topology file (exchanges, queues, bindings, dead-letter queues,
    /// service subscriptions) on RabbitMQ.
    #[command(subcommand)]
    Topology(topology::TopologyCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Every TLS connection of the process (brokers, webhooks to https://, the OTLP exporter)
    // is rustls on ring; the HTTP clients are built without a provider of their own.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let telemetry = match telemetry::init() {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::from(2);
        }
    };
    let outcome = run(cli.command);
    // The last spans are exported before the process ends.
    drop(telemetry);
    match outcome {
        Ok(code) => code,
        Err(error) => {
            // One line, with its causes: `error: applying ...: queue `x` already exists ...`.
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Bench(args) => {
            runtime()?.block_on(bench::run(args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo(args) => {
            runtime()?.block_on(demo::run(args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            use clap::CommandFactory as _;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "tidings",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Dlq(command) => {
            runtime()?.block_on(dlq::run(command))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Publish(args) => {
            runtime()?.block_on(publish::run(args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Schema(command) => schema::run(command),
        Command::Serve(args) => {
            runtime()?.block_on(serve::run(args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Tail(args) => {
            runtime()?.block_on(tail::run(args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Topology(command) => Ok(if runtime()?.block_on(topology::run(command))? {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }),
        Command::Match { pattern, topic } => {
            let pattern = tidings::topic::Pattern::parse(&pattern)?;
            let matches = pattern.matches(&topic);
            println!(
                "`{pattern}` {} `{topic}`",
                if matches { "matches" } else { "does not match" }
            );
            Ok(if matches {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
