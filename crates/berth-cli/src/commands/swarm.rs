//! Swarm commands: `swarm init`, `leave`, `join-token`, `inspect` (autolock's in `swarm_lock`), and the calls the node,
//! service, secret and config commands share.

use anyhow::Result;
use berth_client::{Body, Query};
use bytes::Bytes;
use clap::{Args, Subcommand};
use http::Method;
use serde_json::{Value, json};

use super::{Env, inspect_each};
use crate::output;

/// A cluster API call answering JSON.
pub async fn call(
    env: &Env,
    method: Method,
    path: &str,
    query: &Query,
    body: Option<&Value>,
) -> Result<Value> {
    let body = match body {
        Some(v) => Body::Json(serde_json::to_vec(v)?),
        None => Body::Empty,
    };
    let bytes = env
        .client()?
        .request_bytes(method, path, query, body)
        .await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    Ok(serde_json::from_slice(&bytes)?)
}

/// `<kind> inspect NAME...` over `GET {prefix}/{name}`.
pub async fn inspect_objects(
    env: &Env,
    prefix: &str,
    names: &[String],
    format: Option<&str>,
) -> Result<()> {
    let client = env.client()?;
    inspect_each(names, format, async |name| -> berth_client::Result<Bytes> {
        client
            .request_bytes(
                Method::GET,
                &format!("{prefix}/{name}"),
                &Query::new(),
                Body::Empty,
            )
            .await
    })
    .await
}

#[derive(Debug, Subcommand)]
pub enum SwarmCommand {
    /// Initialize a swarm
    Init(InitArgs),
    /// Join a swarm as a node and/or manager
    Join(JoinArgs),
    /// Leave the swarm
    Leave(LeaveArgs),
    /// Manage join tokens
    JoinToken(JoinTokenArgs),
    /// Display detailed information on the swarm
    Inspect(InspectArgs),
    /// Update the swarm
    Update(super::swarm_lock::UpdateArgs),
    /// Manage the unlock key
    UnlockKey(super::swarm_lock::UnlockKeyArgs),
    /// Unlock swarm
    Unlock,
    /// Display and rotate the root CA
    Ca(super::swarm_ca::CaArgs),
}

pub async fn run(env: &Env, command: SwarmCommand) -> Result<()> {
    match command {
        SwarmCommand::Init(a) => init(env, a).await,
        SwarmCommand::Join(a) => join(env, a).await,
        SwarmCommand::Leave(a) => leave(env, a).await,
        SwarmCommand::JoinToken(a) => join_token(env, a).await,
        SwarmCommand::Update(a) => super::swarm_lock::update(env, a).await,
        SwarmCommand::UnlockKey(a) => super::swarm_lock::unlock_key(env, a).await,
        SwarmCommand::Unlock => super::swarm_lock::unlock(env).await,
        SwarmCommand::Ca(a) => super::swarm_ca::run(env, a).await,
        SwarmCommand::Inspect(a) => {
            let swarm = call(env, Method::GET, "/swarm", &Query::new(), None).await?;
            match a.format {
                Some(f) => output::out(&crate::format::render_one(&f, &swarm)?),
                None => output::out(&format!(
                    "{}\n",
                    serde_json::to_string_pretty(&json!([swarm]))?
                )),
            }
            Ok(())
        }
    }
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Advertised address (format: "<ip|interface>[:port]")
    #[arg(long, value_name = "string")]
    pub advertise_addr: Option<String>,
    /// Listen address (format: "<ip|interface>[:port]")
    #[arg(long, value_name = "node-addr", default_value = "0.0.0.0:2377")]
    pub listen_addr: String,
    /// Force create a new cluster from current state
    #[arg(long)]
    pub force_new_cluster: bool,
    /// Enable manager autolocking (requiring an unlock key to start a stopped manager)
    #[arg(long)]
    pub autolock: bool,
    /// Number of historic tasks to keep per instance or node
    #[arg(long, value_name = "int", default_value_t = 5)]
    pub task_history_limit: i64,
    /// Dispatcher heartbeat period (ns|us|ms|s|m|h)
    #[arg(long, value_name = "duration", default_value = "5s")]
    pub dispatcher_heartbeat: String,
    /// default address pool in CIDR format
    #[arg(long, value_name = "ipNetSlice")]
    pub default_addr_pool: Vec<String>,
    /// default address pool subnet mask length
    #[arg(long, value_name = "uint32", default_value_t = 24)]
    pub default_addr_pool_mask_length: u32,
    /// Port number to use for data path traffic (1024 - 49151). If no value is set or is set to 0, the default port (4789) is used.
    #[arg(long, value_name = "uint32", default_value_t = 0)]
    pub data_path_port: u32,
}

#[derive(Debug, Args)]
pub struct JoinArgs {
    /// Token for entry into the swarm
    #[arg(long, value_name = "string")]
    pub token: String,
    /// Advertised address (format: "<ip|interface>[:port]")
    #[arg(long, value_name = "string")]
    pub advertise_addr: Option<String>,
    /// Listen address (format: "<ip|interface>[:port]")
    #[arg(long, value_name = "node-addr", default_value = "0.0.0.0:2377")]
    pub listen_addr: String,
    /// The manager to join (HOST:PORT)
    pub remote: String,
}

/// `swarm join`: docker's answer texts by the role the node got.
async fn join(env: &Env, a: JoinArgs) -> Result<()> {
    let remote = if a.remote.contains(':') {
        a.remote
    } else {
        format!("{}:2377", a.remote)
    };
    let body = json!({
        "ListenAddr": a.listen_addr,
        "AdvertiseAddr": a.advertise_addr.unwrap_or_default(),
        "RemoteAddrs": [remote],
        "JoinToken": a.token,
    });
    call(env, Method::POST, "/swarm/join", &Query::new(), Some(&body)).await?;
    let info = call(env, Method::GET, "/info", &Query::new(), None).await?;
    if info["Swarm"]["ControlAvailable"] == true {
        output::out("This node joined a swarm as a manager.\n");
    } else {
        output::out("This node joined a swarm as a worker.\n");
    }
    Ok(())
}

async fn init(env: &Env, a: InitArgs) -> Result<()> {
    let heartbeat = berth_api::duration::parse_go_duration(&a.dispatcher_heartbeat)
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "invalid argument \"{0}\" for \"--dispatcher-heartbeat\" flag: time: invalid duration \"{0}\"",
                a.dispatcher_heartbeat
            )
        })?;
    let body = json!({
        "ListenAddr": a.listen_addr,
        "AdvertiseAddr": a.advertise_addr.unwrap_or_default(),
        "ForceNewCluster": a.force_new_cluster,
        "DefaultAddrPool": a.default_addr_pool,
        "SubnetSize": a.default_addr_pool_mask_length,
        "DataPathPort": a.data_path_port,
        "AutoLockManagers": a.autolock,
        "Spec": {
            "Orchestration": {"TaskHistoryRetentionLimit": a.task_history_limit},
            "Dispatcher": {"HeartbeatPeriod": heartbeat},
        },
    });
    let node = call(env, Method::POST, "/swarm/init", &Query::new(), Some(&body)).await?;
    let node = node.as_str().unwrap_or_default();
    output::out(&format!(
        "Swarm initialized: current node ({node}) is now a manager.\n\n"
    ));
    output::out(&join_command(env, "worker").await?);
    output::out(
        "To add a manager to this swarm, run 'berth swarm join-token manager' and follow the instructions.\n\n",
    );
    if a.autolock {
        super::swarm_lock::after_init(env).await?;
    }
    Ok(())
}

/// Docker's "To add a worker ..." paragraph.
async fn join_command(env: &Env, role: &str) -> Result<String> {
    let swarm = call(env, Method::GET, "/swarm", &Query::new(), None).await?;
    let info = call(env, Method::GET, "/info", &Query::new(), None).await?;
    let token = token_of(&swarm, role);
    let addr = info["Swarm"]["RemoteManagers"][0]["Addr"]
        .as_str()
        .unwrap_or_default();
    Ok(format!(
        "To add a {role} to this swarm, run the following command:\n\n    berth swarm join --token {token} {addr}\n\n"
    ))
}

fn token_of(swarm: &Value, role: &str) -> String {
    let key = if role == "manager" {
        "Manager"
    } else {
        "Worker"
    };
    swarm["JoinTokens"][key]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[derive(Debug, Args)]
pub struct LeaveArgs {
    /// Force this node to leave the swarm, ignoring warnings
    #[arg(short, long)]
    pub force: bool,
}

async fn leave(env: &Env, a: LeaveArgs) -> Result<()> {
    let mut q = Query::new();
    q.flag("force", a.force);
    call(env, Method::POST, "/swarm/leave", &q, None).await?;
    output::out("Node left the swarm.\n");
    Ok(())
}

#[derive(Debug, Args)]
pub struct JoinTokenArgs {
    /// Only display token
    #[arg(short, long)]
    pub quiet: bool,
    /// Rotate join token
    #[arg(long)]
    pub rotate: bool,
    #[arg(value_name = "(worker|manager)")]
    pub role: String,
}

async fn join_token(env: &Env, a: JoinTokenArgs) -> Result<()> {
    if a.role != "worker" && a.role != "manager" {
        anyhow::bail!("unknown role {}", a.role);
    }
    if a.rotate {
        let swarm = call(env, Method::GET, "/swarm", &Query::new(), None).await?;
        let mut q = Query::new();
        q.push("version", swarm["Version"]["Index"].to_string());
        let flag = if a.role == "manager" {
            "rotateManagerToken"
        } else {
            "rotateWorkerToken"
        };
        q.flag(flag, true);
        call(env, Method::POST, "/swarm/update", &q, Some(&swarm["Spec"])).await?;
        if !a.quiet {
            output::out(&format!("Successfully rotated {} join token.\n\n", a.role));
        }
    }
    if a.quiet {
        let swarm = call(env, Method::GET, "/swarm", &Query::new(), None).await?;
        output::out(&format!("{}\n", token_of(&swarm, &a.role)));
    } else {
        output::out(&join_command(env, &a.role).await?);
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Format output using a custom template
    #[arg(short, long, value_name = "string")]
    pub format: Option<String>,
}
