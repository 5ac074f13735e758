//! The `berthd` binary: flags and configuration, logging, then the server until a signal.

use std::process::ExitCode;

use anyhow::Context;
use berthd::config::{Config, Flags};
use clap::Parser;

fn main() -> ExitCode {
    let flags = Flags::parse();
    match run(&flags) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berthd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(flags: &Flags) -> anyhow::Result<()> {
    let config = Config::load(flags)?;
    let level = match config.log_level.as_str() {
        "fatal" => "error",
        other => other,
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(level))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    tracing::info!(
        version = berthd::VERSION,
        data_root = %config.data_root.display(),
        "starting berthd"
    );
    for warning in &config.host_warnings {
        tracing::warn!("{warning}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(berthd::server::run(config));
    // Container watcher threads block on their shims; they must not hold up the exit (the
    // containers keep running and are adopted by the next daemon).
    runtime.shutdown_background();
    result?;
    Ok(())
}
