//! The `tidings` command.

mod demo;

use clap::{Parser, Subcommand};

/// tidings: a domain event bus.
#[derive(Debug, Parser)]
#[command(name = "tidings", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the bus end to end on the embedded default and narrates what happens: events
    /// published and handled, fan-out by pattern, a failing handler retried with backoff and
    /// dead-lettered, the dead letter inspected and replayed.
    Demo(demo::DemoArgs),
    /// Tells whether a topic pattern matches a topic, with RabbitMQ topic-exchange semantics.
    Match {
        /// The pattern, e.g. `order.*` or `product.#`.
        pattern: String,
        /// The topic, e.g. `order.created`.
        topic: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Logs go to stderr; `RUST_LOG=tidings=debug` shows every handling span.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .init();
    match cli.command {
        Command::Demo(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(demo::run(args))
        }
        Command::Match { pattern, topic } => {
            let pattern = tidings::topic::Pattern::parse(&pattern)?;
            let matches = pattern.matches(&topic);
            println!(
                "`{pattern}` {} `{topic}`",
                if matches { "matches" } else { "does not match" }
            );
            if !matches {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}
