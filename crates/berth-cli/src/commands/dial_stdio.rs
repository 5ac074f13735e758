//! `berth system dial-stdio`: relays stdin and stdout to a connection to the daemon. The
//! client side of an `ssh://` host runs it on the daemon's host (`ssh host berth system
//! dial-stdio`, or `docker system dial-stdio` from the docker CLI where berth is installed as
//! `docker`) and speaks HTTP through it.
//!
//! The half-closes are docker's: the end of stdin half-closes the daemon connection (a
//! hijacked exec sees its stdin end) and the relay goes on until the daemon has finished
//! answering; the daemon closing the connection ends the relay at once, without waiting for
//! stdin (which a terminal never closes).

use std::io::Read;

use anyhow::{Context as _, Result};
use tokio::io::{AsyncWriteExt, copy};

use super::Env;

pub async fn dial_stdio(env: &Env) -> Result<()> {
    let client = env.client()?;
    let (mut from_daemon, mut to_daemon) = client
        .dial()
        .await
        .context("failed to open the raw stream connection")?;
    // stdin is read by a thread of its own: a blocking read must not keep the process alive
    // once the daemon has closed the connection (tokio's stdin would, at runtime shutdown).
    let (chunks, mut received) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if chunks.blocking_send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let upstream = async move {
        while let Some(chunk) = received.recv().await {
            to_daemon.write_all(&chunk).await?;
        }
        to_daemon.shutdown().await
    };
    let downstream = async move {
        let mut stdout = tokio::io::stdout();
        copy(&mut from_daemon, &mut stdout).await?;
        stdout.flush().await
    };
    tokio::pin!(upstream, downstream);
    tokio::select! {
        sent = &mut upstream => {
            sent.context("error while copying stdin to the daemon")?;
            downstream.await.context("error while copying the daemon's answer to stdout")?;
        }
        received = &mut downstream => {
            received.context("error while copying the daemon's answer to stdout")?;
        }
    }
    Ok(())
}
