//! `tidings topology plan|apply`: a topology file against a broker.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use tidings::amqp::{AmqpConfig, AmqpTransport, Plan, Topology};

/// What to do with the topology file.
#[derive(Debug, Subcommand)]
pub(crate) enum TopologyCommand {
    /// Shows what applying the file would change on the broker, changing nothing. Exits
    /// with 1 when something in the file conflicts with what the broker has.
    Plan(TopologyArgs),
    /// Declares what the file needs and the broker lacks; idempotent. Conflicting
    /// declarations are reported and left alone; the exit code is then 1.
    Apply(TopologyArgs),
}

/// The file and the broker.
#[derive(Debug, Args)]
pub(crate) struct TopologyArgs {
    /// The topology file (TOML): exchanges, queues, bindings, service subscriptions.
    #[arg(long, short, default_value = "topology.toml")]
    file: PathBuf,
    /// The broker. Defaults to `RABBITMQ_URL`, then `TIDINGS_URL` when it is an AMQP URL,
    /// then the local RabbitMQ. `aws://` is AWS (`aws://sns/<topic>` or
    /// `aws://eventbridge/<bus>`, SQS), with the region, endpoint and credentials of the AWS
    /// environment (`AWS_REGION`, `AWS_ENDPOINT_URL`...) or the URL's
    /// `?region=...&endpoint=...`; it needs the `aws` feature.
    #[arg(long)]
    url: Option<String>,
}

impl TopologyArgs {
    /// The AWS URL asked for, if any.
    fn aws_url(&self) -> Option<String> {
        self.url
            .clone()
            .or_else(|| std::env::var("TIDINGS_URL").ok())
            .filter(|u| u.starts_with("aws:"))
    }
}

impl TopologyArgs {
    fn config(&self) -> anyhow::Result<AmqpConfig> {
        let mut config = AmqpConfig::from_env()?;
        let url = self.url.clone().or_else(|| {
            std::env::var("RABBITMQ_URL").err().and_then(|_| {
                std::env::var("TIDINGS_URL")
                    .ok()
                    .filter(|u| u.starts_with("amqp://") || u.starts_with("amqps://"))
            })
        });
        if let Some(url) = url {
            // The RABBITMQ_* tuning (dead-letter TTL, prefetch) still applies.
            config = config.with_url(url);
        }
        Ok(config.connection_name("tidings topology"))
    }
}

/// Runs `command`; returns whether the broker and the file agree (no conflict).
pub(crate) async fn run(command: TopologyCommand) -> anyhow::Result<bool> {
    let (args, apply) = match &command {
        TopologyCommand::Plan(args) => (args, false),
        TopologyCommand::Apply(args) => (args, true),
    };
    if let Some(url) = args.aws_url() {
        return aws::run(args, &url, apply).await;
    }
    let topology = Topology::from_file(&args.file)?;
    let config = topology.configure(args.config()?);
    let url = config.url().clone();
    let transport = AmqpTransport::connect(config).await?;
    let plan: Plan = if apply {
        transport.apply(&topology).await
    } else {
        transport.plan(&topology).await
    }
    .with_context(|| {
        format!(
            "{} `{}` on {url}",
            if apply { "applying" } else { "planning" },
            args.file.display()
        )
    })?;
    println!("{plan}");
    let conflicts = plan.conflicts().count();
    if apply {
        if conflicts == 0 {
            println!("applied to {url}");
        } else {
            eprintln!(
                "{conflicts} declaration(s) conflict with what {url} has and were left as they are"
            );
        }
    }
    Ok(conflicts == 0)
}

/// Topology files on AWS.
#[cfg(feature = "aws")]
mod aws {
    use anyhow::Context as _;
    use tidings::aws::{AwsConfig, AwsTransport, Topology};

    use super::TopologyArgs;

    pub(super) async fn run(args: &TopologyArgs, url: &str, apply: bool) -> anyhow::Result<bool> {
        let topology = Topology::from_file(&args.file)?;
        let config = AwsConfig::from_url(url)?;
        let what = if apply { "applying" } else { "planning" };
        let plan = if apply {
            AwsTransport::apply(config, &topology).await
        } else {
            AwsTransport::plan(config, &topology).await
        }
        .with_context(|| format!("{what} `{}` on AWS", args.file.display()))?;
        println!("{plan}");
        if apply {
            println!("applied to AWS");
        }
        Ok(true)
    }
}

/// Without the `aws` feature: says how to get it.
#[cfg(not(feature = "aws"))]
mod aws {
    use super::TopologyArgs;

    pub(super) async fn run(_: &TopologyArgs, url: &str, _: bool) -> anyhow::Result<bool> {
        anyhow::bail!(
            "`{url}` is AWS, and this tidings was built without it: build with `--features aws`"
        )
    }
}
