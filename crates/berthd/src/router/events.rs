//! `GET /events`: replay from the ring (`since`), then live events until `until`, the client
//! leaves, or the daemon shuts down. One JSON object per line, flushed per event.

use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_api::models::EventMessage;
use bytes::Bytes;
use chrono::Utc;
use tokio::sync::{broadcast, mpsc};

use super::{Query, Result, channel_body};
use crate::events::{EVENT_FILTERS, after, before, event_matches, parse_timestamp};
use crate::state::AppState;

pub async fn events(State(state): State<AppState>, query: Query) -> Result<Response> {
    let now = Utc::now();
    let filters = query.filters()?;
    filters.validate(EVENT_FILTERS)?;
    let since = query
        .non_empty("since")
        .map(|v| parse_timestamp(v, now))
        .transpose()?;
    let until = query
        .non_empty("until")
        .map(|v| parse_timestamp(v, now))
        .transpose()?;

    let (past, mut live) = state.events.subscribe();
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        let send = |ev: &EventMessage| {
            let mut line = serde_json::to_vec(ev).unwrap_or_default();
            line.push(b'\n');
            Bytes::from(line)
        };
        if since.is_some() {
            for ev in past
                .iter()
                .filter(|ev| after(ev, since) && before(ev, until))
                .filter(|ev| event_matches(&filters, ev))
            {
                if tx.send(send(ev)).await.is_err() {
                    return;
                }
            }
        }
        // How long until `until` is reached (None: stream forever).
        let deadline = until.map(|(s, n)| {
            let until_nanos = s as i128 * 1_000_000_000 + n as i128;
            let now_nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default() as i128;
            let wait = (until_nanos - now_nanos).max(0);
            tokio::time::Instant::now() + Duration::from_nanos(wait as u64)
        });
        if deadline.is_some_and(|d| d <= tokio::time::Instant::now()) {
            return;
        }
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = &mut sleep => return,
                _ = tx.closed() => return,
                received = live.recv() => match received {
                    Ok(ev) => {
                        if after(&ev, since) && before(&ev, until) && event_matches(&filters, &ev)
                            && tx.send(send(&ev)).await.is_err()
                        {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(skipped = n, "an events listener fell behind");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    });
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        channel_body(rx),
    )
        .into_response())
}
