//! The `berthd` binary: flags and configuration, logging, then the server until a signal.

use std::process::ExitCode;

use anyhow::Context;
use berthd::config::{Config, Flags};
use clap::Parser;

fn main() -> ExitCode {
    berthd::allocator::limit_arenas();
    // A rootless daemon's child enters its namespaces first: creating a user namespace needs
    // a process with a single thread.
    let is_child = match berthd::rootless::child::enter_if_child() {
        Ok(is_child) => is_child,
        Err(e) => {
            eprintln!("berthd: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let flags = Flags::parse();
    if !is_child && berthd::rootless::wanted(&flags) {
        if rustix::process::geteuid().is_root() {
            eprintln!(
                "berthd: --rootless is for an ordinary user: start it as that user (root runs the system daemon)"
            );
            return ExitCode::FAILURE;
        }
        return match berthd::rootless::parent::run() {
            Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
            Err(e) => {
                eprintln!("berthd: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    match run(&flags) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berthd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn rootless_dirs() -> Result<berthd::rootless::Dirs, String> {
    berthd::rootless::Dirs::from_env(&|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
}

fn run(flags: &Flags) -> anyhow::Result<()> {
    let mut config = Config::load(flags)?;
    if berthd::rootless::is_child() {
        let dirs = rootless_dirs().map_err(anyhow::Error::msg)?;
        berthd::rootless::apply_dirs(&mut config, flags, &dirs);
    }
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
    berthd::rootless::child::log_cgroups();
    for warning in &config.host_warnings {
        tracing::warn!("{warning}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.spawn(berthd::allocator::trim_periodically());
    let result = runtime.block_on(berthd::server::run(config));
    // Blocking work still under way (a stream from a shim, a trim) must not hold up the exit;
    // running containers keep running and are adopted by the next daemon.
    runtime.shutdown_background();
    result?;
    Ok(())
}
