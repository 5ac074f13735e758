//! Autolock commands: `swarm update --autolock`, `swarm unlock-key [--rotate] [-q]`,
//! `swarm unlock`, and the key paragraph `swarm init --autolock` prints (docker CLI's texts).

use std::io::BufRead;

use anyhow::Result;
use berth_client::Query;
use clap::Args;
use http::Method;
use serde_json::{Value, json};

use super::Env;
use super::swarm::call;
use crate::output;

/// docker's paragraph after turning autolock on.
pub fn key_paragraph(key: &str) -> String {
    format!(
        "To unlock a swarm manager after it restarts, run the `berth swarm unlock`\ncommand and provide the following key:\n\n    {key}\n\nRemember to store this key in a password manager, since without it you\nwill not be able to restart the manager.\n"
    )
}

async fn unlock_key_of(env: &Env) -> Result<String> {
    let r = call(env, Method::GET, "/swarm/unlockkey", &Query::new(), None).await?;
    Ok(r["UnlockKey"].as_str().unwrap_or_default().to_string())
}

/// Prints the unlock key after `swarm init --autolock`.
pub async fn after_init(env: &Env) -> Result<()> {
    let key = unlock_key_of(env).await?;
    if key.is_empty() {
        anyhow::bail!("no unlock key is set");
    }
    output::out(&key_paragraph(&key));
    Ok(())
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Change manager autolocking setting (true|false)
    #[arg(long, value_name = "bool", num_args = 0..=1, default_missing_value = "true")]
    pub autolock: Option<bool>,
    /// Validity period for node certificates (ns|us|ms|s|m|h)
    #[arg(long, value_name = "duration")]
    pub cert_expiry: Option<String>,
}

/// `swarm update`: the spec as it is, with the flags given changed.
pub async fn update(env: &Env, a: UpdateArgs) -> Result<()> {
    let swarm = call(env, Method::GET, "/swarm", &Query::new(), None).await?;
    let mut spec = swarm["Spec"].clone();
    let was = spec["EncryptionConfig"]["AutoLockManagers"] == true;
    if let Some(on) = a.autolock {
        spec["EncryptionConfig"]["AutoLockManagers"] = json!(on);
    }
    if let Some(expiry) = &a.cert_expiry {
        // Applies from each node's next renewal, as swarmkit.
        let nanos = berth_api::duration::parse_go_duration(expiry).ok_or_else(|| {
            anyhow::anyhow!(
                "invalid argument \"{expiry}\" for \"--cert-expiry\" flag: time: invalid duration \"{expiry}\""
            )
        })?;
        spec["CAConfig"]["NodeCertExpiry"] = json!(nanos);
    }
    post_update(env, &swarm, &spec, false).await?;
    output::out("Swarm updated.\n");
    if a.autolock == Some(true) && !was {
        output::out(&key_paragraph(&unlock_key_of(env).await?));
    }
    Ok(())
}

async fn post_update(env: &Env, swarm: &Value, spec: &Value, rotate: bool) -> Result<()> {
    let mut q = Query::new();
    q.push("version", swarm["Version"]["Index"].to_string());
    q.flag("rotateManagerUnlockKey", rotate);
    call(env, Method::POST, "/swarm/update", &q, Some(spec)).await?;
    Ok(())
}

#[derive(Debug, Args)]
pub struct UnlockKeyArgs {
    /// Only display token
    #[arg(short, long)]
    pub quiet: bool,
    /// Rotate unlock key
    #[arg(long)]
    pub rotate: bool,
}

pub async fn unlock_key(env: &Env, a: UnlockKeyArgs) -> Result<()> {
    if a.rotate {
        let swarm = call(env, Method::GET, "/swarm", &Query::new(), None).await?;
        if swarm["Spec"]["EncryptionConfig"]["AutoLockManagers"] != true {
            anyhow::bail!("cannot rotate because autolock is not turned on");
        }
        post_update(env, &swarm, &swarm["Spec"], true).await?;
        if !a.quiet {
            output::out("Successfully rotated manager unlock key.\n\n");
        }
    }
    let key = unlock_key_of(env).await?;
    if key.is_empty() {
        anyhow::bail!("no unlock key is set");
    }
    if a.quiet {
        output::out(&format!("{key}\n"));
    } else {
        output::out(&key_paragraph(&key));
    }
    Ok(())
}

/// `swarm unlock`: the key from standard input.
pub async fn unlock(env: &Env) -> Result<()> {
    let info = call(env, Method::GET, "/info", &Query::new(), None).await?;
    match info["Swarm"]["LocalNodeState"].as_str().unwrap_or_default() {
        "inactive" => anyhow::bail!("Error: This node is not part of a swarm"),
        "locked" => {}
        _ => anyhow::bail!("Error: swarm is not locked"),
    }
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        output::err("Enter unlock key: ");
    }
    let mut key = String::new();
    std::io::stdin().lock().read_line(&mut key)?;
    let body = json!({"UnlockKey": key.trim()});
    call(
        env,
        Method::POST,
        "/swarm/unlock",
        &Query::new(),
        Some(&body),
    )
    .await?;
    Ok(())
}
