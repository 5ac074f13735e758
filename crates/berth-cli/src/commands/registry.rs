//! `berth registry serve|gc`: Berth's own registry (crate berth-registry-server), run in the
//! foreground with logs on stderr. Unlike the other commands it talks to no daemon, and it
//! gets its own multi-threaded runtime (the CLI's is single-threaded for start-up time).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use berth_registry_server::{Config, Registry, gc, server};
use clap::{Args, Subcommand};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Run a registry (OCI distribution v1.1) in the foreground
    Serve(ServeArgs),
    /// Delete unreferenced blobs and untagged manifests (safe beside a running server: content younger than the grace period is kept)
    Gc(GcArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:5000, or the config's `addr`)
    #[arg(long)]
    pub addr: Option<String>,
    /// Storage directory (or the config's `root`)
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Configuration file, YAML or JSON (TLS, auth, proxy, GC, quota; see docs/registry-server.md)
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Storage directory (or the config's `root`)
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Configuration file, YAML or JSON
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Keep content modified less than this many seconds ago (default: the config's gc.grace_secs, 3600)
    #[arg(long)]
    pub grace: Option<u64>,
}

fn load(config: Option<&PathBuf>, root: Option<PathBuf>) -> Result<Config> {
    let mut c = match config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if root.is_some() {
        c.root = root;
    }
    Ok(c)
}

/// Runs a registry command to its end (called before the CLI's own runtime exists).
pub fn main(command: RegistryCommand) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match command {
        RegistryCommand::Serve(args) => runtime.block_on(serve(args)),
        RegistryCommand::Gc(args) => runtime.block_on(collect(args)),
    }
}

async fn serve(args: ServeArgs) -> Result<()> {
    let mut config = load(args.config.as_ref(), args.root)?;
    if let Some(addr) = args.addr {
        config.addr = addr;
    }
    let registry = Arc::new(Registry::new(config)?);
    let (listener, local) = server::bind(&registry.config.addr).await?;
    let scheme = if registry.config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!(address = %local, %scheme, root = ?registry.config.root, "registry listening");
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("stopping: finishing in-flight requests");
        stop.cancel();
    });
    server::serve(registry, listener, shutdown).await?;
    Ok(())
}

async fn collect(args: GcArgs) -> Result<()> {
    let mut config = load(args.config.as_ref(), args.root)?;
    if let Some(g) = args.grace {
        config.gc.grace_secs = g;
    }
    let registry = Arc::new(Registry::new(config)?);
    let r = registry.clone();
    let report = tokio::task::spawn_blocking(move || gc::collect(&r.store, &r.config.gc))
        .await
        .context("garbage collection panicked")??;
    println!(
        "repositories: {}\nmanifests deleted: {}\nblob links deleted: {}\nblobs deleted: {}\nbytes freed: {}\nblobs kept: {}\ntime: {:.3}s",
        report.repositories,
        report.manifests_deleted,
        report.links_deleted,
        report.blobs_deleted,
        report.bytes_freed,
        report.blobs_kept,
        report.elapsed.as_secs_f64()
    );
    Ok(())
}
