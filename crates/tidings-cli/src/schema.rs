//! `tidings schema check|export`: event contracts in schema directories.
//!
//! A schema directory is what `tidings::schema::Catalog::write` lays out: one
//! `<type>/v<version>.schema.json` per event type and version, and `asyncapi.json`. A Rust
//! service writes its own (`Catalog::of(&bus).write("schemas")`, in a test or at start);
//! `tidings serve` holds gateway traffic to one (`[serve] schemas`).
//!
//! - `check --against SNAPSHOT [DIR]` compares DIR with a committed snapshot and exits 1 on a
//!   breaking change (a removed, retyped or newly required field, a narrowed enum) that
//!   does not come with a version bump; 0 otherwise, listing the harmless changes.
//! - `export` writes the AsyncAPI 3.0 document of `tidings serve` beside the schemas: the
//!   gateway sends what its tokens may publish, its webhooks receive what their patterns
//!   match.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use tidings::schema::{Catalog, EventSchema};
use tidings::topic::Pattern;

use crate::config::FileConfig;

/// `tidings schema`.
#[derive(Debug, Subcommand)]
pub(crate) enum SchemaCommand {
    /// Compares a schema directory with a committed snapshot; exits 1 on a breaking change
    /// (removed, retyped or newly required field, narrowed enum) without a version bump.
    Check(CheckArgs),
    /// Writes the AsyncAPI 3.0 document (`asyncapi.json`) of `tidings serve` and the JSON
    /// Schemas it holds events to.
    Export(ExportArgs),
}

/// `tidings schema check`.
#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// The committed snapshot: a schema directory.
    #[arg(long)]
    against: PathBuf,
    /// The current schemas (default: `[serve] schemas` of the configuration, else
    /// `schemas`).
    dir: Option<PathBuf>,
    /// The configuration file (default: `tidings.toml` in the working directory, if any).
    #[arg(long, env = "TIDINGS_CONFIG")]
    config: Option<PathBuf>,
}

/// `tidings schema export`.
#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// The schemas to describe (default: `[serve] schemas` of the configuration).
    #[arg(long, env = "TIDINGS_SCHEMAS")]
    schemas: Option<PathBuf>,
    /// Where to write (default: the schema directory itself).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The document's title.
    #[arg(long, default_value = "tidings serve")]
    title: String,
    /// The version of the API the document describes.
    #[arg(long, default_value = "1.0.0")]
    api_version: String,
    /// The configuration file (default: `tidings.toml` in the working directory, if any).
    #[arg(long, env = "TIDINGS_CONFIG")]
    config: Option<PathBuf>,
}

pub(crate) fn run(command: SchemaCommand) -> anyhow::Result<ExitCode> {
    match command {
        SchemaCommand::Check(args) => check(args),
        SchemaCommand::Export(args) => export(args),
    }
}

fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let dir = match args.dir {
        Some(dir) => dir,
        None => FileConfig::load(args.config.as_deref())?
            .serve
            .schemas
            .unwrap_or_else(|| PathBuf::from("schemas")),
    };
    let snapshot = Catalog::read(&args.against).context("reading the snapshot")?;
    let current = Catalog::read(&dir).context("reading the current schemas")?;
    let report = current.compare_with(&snapshot);
    if !report.changes().is_empty() {
        println!("{report}");
    }
    let breaking = report.breaking().count();
    let total = report.changes().len();
    if breaking > 0 {
        println!(
            "{breaking} breaking change(s) of {total} between {} and {}: bump the version \
             (with an upcaster) or make the change compatible",
            args.against.display(),
            dir.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "compatible: {} is a safe successor of {} ({total} change(s), none breaking)",
        dir.display(),
        args.against.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let file = FileConfig::load(args.config.as_deref())?;
    let dir = args.schemas.or(file.serve.schemas).context(
        "no schemas to export: pass --schemas DIR or set `schemas` in [serve] of tidings.toml",
    )?;
    let out = args.out.unwrap_or_else(|| dir.clone());
    let schemas = Catalog::read(&dir).context("reading the schemas")?;
    // The gateway publishes what some token may publish (anything, with no tokens); the
    // webhooks handle what their patterns match.
    let parse = |patterns: &[String], what: &str| -> anyhow::Result<Vec<Pattern>> {
        patterns
            .iter()
            .map(|p| Pattern::parse(p).with_context(|| format!("{what}: pattern `{p}`")))
            .collect()
    };
    let mut published = Vec::new();
    for token in &file.serve.tokens {
        published.extend(parse(&token.publish, &format!("token `{}`", token.name))?);
    }
    let mut handled = Vec::new();
    for webhook in &file.serve.webhooks {
        handled.extend(parse(
            &webhook.patterns,
            &format!("webhook `{}`", webhook.name),
        )?);
    }
    let open = file.serve.tokens.is_empty();
    let catalog = schemas.events().iter().fold(
        Catalog::new(args.title).api_version(args.api_version),
        |catalog, event| {
            let sent = open || published.iter().any(|p| p.matches(&event.name));
            let received = handled.iter().any(|p| p.matches(&event.name));
            catalog.with(
                EventSchema::new(event.name.clone(), event.version, event.schema.clone())
                    .sent(sent)
                    .received(received),
            )
        },
    );
    catalog.write(&out)?;
    println!(
        "wrote {} schema(s) of {} event type(s) and asyncapi.json to {}",
        catalog.events().len(),
        catalog.events().chunk_by(|a, b| a.name == b.name).count(),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}
