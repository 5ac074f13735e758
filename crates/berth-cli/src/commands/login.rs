//! `berth login` and `berth logout`, as docker's: the daemon checks the credentials with the
//! registry (`POST /auth`), then they are kept in `config.json` or a credential helper (see
//! `crate::credentials`) for `pull`, `push` and `run` to send.

use std::io::{IsTerminal, Read, Write};

use anyhow::Result;
use berth_client::Client;
use clap::Args;

use super::Env;
use crate::credentials::{self, AuthConfig, INDEX_SERVER};
use crate::output::{self, StatusError, describe_client_error};

#[derive(Debug, Args)]
#[command(override_usage = "berth login [OPTIONS] [SERVER]")]
pub struct LoginArgs {
    /// Password
    #[arg(short, long, value_name = "string")]
    pub password: Option<String>,
    /// Take the password from stdin
    #[arg(long = "password-stdin")]
    pub password_stdin: bool,
    /// Username
    #[arg(short, long, value_name = "string")]
    pub username: Option<String>,
    #[arg(value_name = "SERVER")]
    pub server: Option<String>,
}

#[derive(Debug, Args)]
#[command(override_usage = "berth logout [SERVER]")]
pub struct LogoutArgs {
    #[arg(value_name = "SERVER")]
    pub server: Option<String>,
}

/// The server to log in to: Docker Hub unless another is named.
fn server_address(server: Option<&str>) -> String {
    match server {
        Some(s) if !s.is_empty() && s != "docker.io" => s.to_string(),
        _ => INDEX_SERVER.to_string(),
    }
}

pub async fn login(env: &Env, args: LoginArgs) -> Result<()> {
    if args.password.is_some() && args.password_stdin {
        return Err(StatusError::error(
            1,
            "conflicting options: cannot specify both --password and --password-stdin",
        ));
    }
    let username = args.username.as_deref().unwrap_or_default().trim();
    let mut password = args.password.clone().unwrap_or_default();
    if args.password_stdin {
        if username.is_empty() {
            return Err(StatusError::error(
                1,
                "the --password-stdin option requires --username to be set",
            ));
        }
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        let text = text.strip_suffix('\n').unwrap_or(&text);
        password = text.strip_suffix('\r').unwrap_or(text).to_string();
    } else if args.password.is_some() {
        output::err("WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n");
    }
    let server = server_address(args.server.as_deref());
    let client = env.client()?;
    // As docker: with neither flag, stored credentials are tried first (and kept as they are),
    // and their user is the prompt's default.
    let stored = if username.is_empty() && password.is_empty() {
        credentials::get(&env.config, &server).unwrap_or_default()
    } else {
        AuthConfig::default()
    };
    if !stored.is_empty() {
        output::err(&format!(
            "Authenticating with existing credentials... [Username: {}]\n\n Info -> To login with a different account, run 'berth logout' followed by 'berth login'\n\n\n",
            stored.username
        ));
        if let Ok(token) = authenticate(&client, &stored).await {
            // A token service may rotate the identity token: the new one is kept (as docker).
            if !token.is_empty() && token != stored.identitytoken {
                let mut renewed = stored.clone();
                renewed.password.clear();
                renewed.identitytoken = token;
                credentials::store(&env.config, &server, &renewed).map_err(|e| {
                    StatusError::error(1, format!("Error saving credentials: {e:#}"))
                })?;
            }
            output::out("Login Succeeded\n");
            return Ok(());
        }
    }
    let (username, password) = prompt(username, password, &stored)?;
    let auth = AuthConfig {
        username,
        password,
        serveraddress: server.clone(),
        identitytoken: String::new(),
    };
    let response = authenticate(&client, &auth)
        .await
        .map_err(|e| StatusError::error(1, describe_client_error(&e)))?;
    finish(env, &server, auth, response)
}

/// `POST /auth`: the daemon checks the credentials with the registry; the identity token it
/// may answer with.
async fn authenticate(client: &Client, auth: &AuthConfig) -> berth_client::Result<String> {
    let body = serde_json::to_vec(auth).unwrap_or_default();
    client.registry_login(body).await
}

/// Keeps the credentials that worked (the identity token instead of the password when the
/// registry gave one) and says so.
fn finish(env: &Env, server: &str, mut auth: AuthConfig, identity_token: String) -> Result<()> {
    if !identity_token.is_empty() {
        auth.password.clear();
        auth.identitytoken = identity_token;
    }
    let plain = credentials::store(&env.config, server, &auth)
        .map_err(|e| StatusError::error(1, format!("Error saving credentials: {e:#}")))?;
    if plain {
        output::err(&format!(
            "\nWARNING! Your credentials are stored unencrypted in '{}'.\nConfigure a credential helper to remove this warning. See\nhttps://docs.docker.com/go/credential-store/\n\n",
            env.config.config_file().display()
        ));
    }
    output::out("Login Succeeded\n");
    Ok(())
}

/// Asks for what the flags did not give, on a terminal only (as docker).
fn prompt(username: &str, password: String, stored: &AuthConfig) -> Result<(String, String)> {
    if !username.is_empty() && !password.is_empty() {
        return Ok((username.to_string(), password));
    }
    if !std::io::stdin().is_terminal() {
        return Err(StatusError::error(
            1,
            "Error: Cannot perform an interactive login from a non TTY device",
        ));
    }
    let username = if username.is_empty() {
        let default = &stored.username;
        if default.is_empty() {
            output::out("Username: ");
        } else {
            output::out(&format!("Username ({default}): "));
        }
        let line = read_line()?;
        let line = line.trim();
        if line.is_empty() {
            default.clone()
        } else {
            line.to_string()
        }
    } else {
        username.to_string()
    };
    if username.is_empty() {
        return Err(StatusError::error(1, "Error: Non-null Username Required"));
    }
    let password = if password.is_empty() {
        output::out("Password: ");
        let password = read_password()?;
        output::out("\n");
        password
    } else {
        password
    };
    if password.is_empty() {
        return Err(StatusError::error(1, "Error: Password Required"));
    }
    Ok((username, password))
}

fn read_line() -> Result<String> {
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// A line read with the terminal's echo off.
fn read_password() -> Result<String> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin)?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    tcsetattr(&stdin, OptionalActions::Now, &quiet)?;
    let line = read_line();
    tcsetattr(&stdin, OptionalActions::Now, &saved)?;
    line
}

pub async fn logout(env: &Env, args: LogoutArgs) -> Result<()> {
    let (hostname, candidates) = match args.server.as_deref().filter(|s| !s.is_empty()) {
        None => (INDEX_SERVER.to_string(), vec![INDEX_SERVER.to_string()]),
        Some(server) => {
            let hostname = credentials::to_hostname(server).to_string();
            // Keys older clients may have written for the same registry.
            let candidates = vec![
                server.to_string(),
                hostname.clone(),
                format!("http://{hostname}"),
                format!("https://{hostname}"),
            ];
            (hostname, candidates)
        }
    };
    output::out(&format!("Removing login credentials for {hostname}\n"));
    let mut errors = Vec::new();
    for key in &candidates {
        if let Err(e) = credentials::erase(&env.config, key) {
            errors.push(format!("{key}: {e:#}"));
        }
    }
    if errors.len() == candidates.len() {
        output::err("WARNING: could not erase credentials:\n");
        for e in errors {
            output::out(&format!("{e}\n"));
        }
    }
    Ok(())
}
