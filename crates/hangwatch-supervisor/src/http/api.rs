//! The read-only routes: `/metrics`, `/healthz`, `/readyz` and the JSON API under `/api/`.
//!
//! - `GET /api/status`: the control socket's status reply, as JSON.
//! - `GET /api/events?since=SEQ`: the events of this supervisor's life kept in memory (the last
//!   [`RECENT_EVENTS`](super::telemetry::RECENT_EVENTS)), each with its sequence number `seq`;
//!   `since` returns only those after it. `since` may also be a time as the records write it
//!   (`2026-01-01T12:00:00.000Z`). Older events are in the event log (`hangwatch events`).
//! - `GET /api/stream`: the same records as server-sent events, as they happen.
//! - `GET /api/incidents`, `GET /api/incidents/ID`: the incidents of this supervisor's life, and
//!   one incident's reports (its JSON diagnosis and its text).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hangwatch_process::tree::ProcessTable;
use hangwatch_protocol::control::{Reply, Request, Status};
use http_body_util::BodyExt;
use hyper::StatusCode;
use hyper::body::{Bytes, Frame};
use hyper::header::{self, HeaderValue};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;

use super::health::{Check, Health, decide};
use super::metrics::{Resources, Snapshot, render};
use super::server::{Body, Context, json, respond, text};
use crate::up::Msg;

/// How long the loop has to answer before the endpoint says it does not.
pub(crate) const LOOP_ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// Asks the loop for its status, as `hangwatch status` does; also returns how long the answer
/// took.
pub(crate) async fn ask_status(context: &Context) -> Result<(Status, Duration), &'static str> {
    let began = Instant::now();
    let (reply_tx, reply_rx) = oneshot::channel();
    // Nothing waits for a status reply to be written.
    let (_written_tx, written_rx) = oneshot::channel();
    let msg = Msg::Control {
        request: Request::Status { service: None },
        reply: reply_tx,
        written: written_rx,
    };
    let asked = async {
        context
            .tx
            .send(msg)
            .await
            .map_err(|_| "the supervisor has ended")?;
        reply_rx.await.map_err(|_| "the supervisor has ended")
    };
    match tokio::time::timeout(LOOP_ANSWER_WITHIN, asked).await {
        Ok(Ok(Reply::Status(status))) => Ok((status, began.elapsed())),
        Ok(Ok(_)) => Err("the supervisor gave an unexpected reply"),
        Ok(Err(why)) => Err(why),
        Err(_) => Err("the supervisor's loop did not answer within 2 s"),
    }
}

pub(crate) async fn status(context: &Context) -> hyper::Response<Body> {
    match ask_status(context).await {
        Ok((status, _)) => json(StatusCode::OK, &status),
        Err(why) => json(StatusCode::SERVICE_UNAVAILABLE, &Health::unanswered(why)),
    }
}

pub(crate) async fn health(context: &Context, check: Check) -> hyper::Response<Body> {
    let health = match ask_status(context).await {
        Ok((status, _)) => decide(check, &status),
        Err(why) => Health::unanswered(why),
    };
    let code = if health.ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(code, &health)
}

pub(crate) async fn metrics(context: &Context) -> hyper::Response<Body> {
    let (status, loop_lag) = match ask_status(context).await {
        Ok(answer) => answer,
        Err(why) => return text(StatusCode::SERVICE_UNAVAILABLE, why),
    };
    let now_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let mains: Vec<(String, i32)> = status
        .services
        .iter()
        .filter_map(|s| s.pid.map(|pid| (s.name.clone(), pid)))
        .collect();
    let own_pid = context.own_pid;
    let (counters, (notify_received, notify_rejected)) = {
        let inner = context.telemetry.lock();
        (inner.services.clone(), context.telemetry.notify_counts())
    };
    // Reading /proc is blocking I/O, and rendering a few hundred kilobytes for hundreds of
    // services takes milliseconds: both off the runtime's thread, which the loop shares.
    let rendered = tokio::task::spawn_blocking(move || {
        let resources = resources(own_pid, &mains);
        render(&Snapshot {
            status: &status,
            counters: &counters,
            resources: &resources,
            loop_lag,
            notify_received,
            notify_rejected,
            now_unix,
        })
    })
    .await;
    let Ok(body) = rendered else {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot render the metrics\n",
        );
    };
    respond(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        Bytes::from(body),
    )
}

/// Memory, CPU time and process count of each running service's tree: its program and the
/// program's descendants, from one read of hangwatch's subtree.
fn resources(own_pid: i32, mains: &[(String, i32)]) -> HashMap<String, Resources> {
    let Ok(table) = ProcessTable::subtree(own_pid) else {
        return HashMap::new();
    };
    let page = rustix::param::page_size() as u64;
    let tick = rustix::param::clock_ticks_per_second() as f64;
    mains
        .iter()
        .filter_map(|(name, pid)| {
            let main = table.get(*pid)?;
            let mut r = Resources::default();
            for stat in std::iter::once(main).chain(table.descendants(*pid)) {
                r.memory_bytes += stat.rss_pages * page;
                r.cpu_seconds += stat.cpu_ticks as f64 / tick;
                r.processes += 1;
            }
            Some((name.clone(), r))
        })
        .collect()
}

#[derive(Serialize)]
struct Events<'a> {
    /// The sequence number the next event will have: the `since` of the next call.
    next: u64,
    events: Vec<&'a super::telemetry::Numbered>,
}

pub(crate) fn events(context: &Context, query: &str) -> hyper::Response<Body> {
    let since = param(query, "since");
    let inner = context.telemetry.lock();
    let events: Vec<_> = inner
        .recent
        .iter()
        .filter(|e| match since.as_deref() {
            None => true,
            Some(since) => match since.parse::<u64>() {
                Ok(seq) => e.seq > seq,
                Err(_) => e.record.at.as_str() > since,
            },
        })
        .map(|e| &**e)
        .collect();
    let next = inner.recent.back().map_or(0, |e| e.seq + 1);
    json(StatusCode::OK, &Events { next, events })
}

pub(crate) fn incidents(context: &Context) -> hyper::Response<Body> {
    let inner = context.telemetry.lock();
    let list: Vec<_> = inner.incidents.iter().rev().collect();
    json(StatusCode::OK, &list)
}

#[derive(Serialize)]
struct Incident {
    id: String,
    /// The JSON diagnosis as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    diagnosis: Option<serde_json::Value>,
    /// The report in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
}

/// Reads incident `id`'s reports; `None` when it has neither.
pub(crate) async fn read_incident(
    context: &Context,
    id: &str,
) -> Option<(Option<serde_json::Value>, Option<String>)> {
    if !super::telemetry::is_incident_id(id) {
        return None;
    }
    let json_path = context.incidents_dir.join(format!("{id}.json"));
    let text_path = context.incidents_dir.join(format!("{id}.txt"));
    // File reads block: off the runtime's thread, which the loop shares.
    let read = tokio::task::spawn_blocking(move || {
        let diagnosis =
            read_capped(&json_path).and_then(|bytes| serde_json::from_slice(&bytes).ok());
        let text =
            read_capped(&text_path).map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
        (diagnosis, text)
    });
    let (diagnosis, text) = read.await.ok()?;
    (diagnosis.is_some() || text.is_some()).then_some((diagnosis, text))
}

/// The largest incident file served (a report with Python stacks of many threads stays far
/// below it).
const MAX_INCIDENT_FILE: u64 = 16 << 20;

fn read_capped(path: &std::path::Path) -> Option<Vec<u8>> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).ok()?;
    let mut bytes = Vec::new();
    file.take(MAX_INCIDENT_FILE).read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

pub(crate) async fn incident(context: &Context, id: &str) -> hyper::Response<Body> {
    match read_incident(context, id).await {
        Some((diagnosis, text)) => json(
            StatusCode::OK,
            &Incident {
                id: id.to_owned(),
                diagnosis,
                text,
            },
        ),
        None => super::server::text(StatusCode::NOT_FOUND, "no such incident\n"),
    }
}

/// `/api/stream`: each new event as a server-sent event whose `id` is its sequence number. A
/// subscriber that falls behind gets an `event: lagged` and should reload what it shows.
pub(crate) fn stream(context: &Context, _query: &str) -> hyper::Response<Body> {
    let Ok(permit) = context.streams.clone().try_acquire_owned() else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "too many event streams\n");
    };
    let mut events = context.telemetry.subscribe();
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        let _permit = permit;
        // Tells the client how soon to reconnect when the connection ends.
        if tx
            .send(Bytes::from_static(b"retry: 1000\n\n"))
            .await
            .is_err()
        {
            return;
        }
        loop {
            let frame = tokio::select! {
                () = tx.closed() => return,
                event = events.recv() => match event {
                    Ok((seq, json)) => format!("id: {seq}\ndata: {json}\n\n"),
                    Err(broadcast::error::RecvError::Lagged(_)) => "event: lagged\ndata: {}\n\n".to_owned(),
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            };
            if tx.send(Bytes::from(frame)).await.is_err() {
                return;
            }
        }
    });
    let mut response = hyper::Response::new(EventBody { rx }.boxed());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    response
}

/// A response body fed by a channel, for the event stream.
struct EventBody {
    rx: mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for EventBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}

/// The value of `key` in a query string, percent-decoded.
fn param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_decoded() {
        assert_eq!(param("since=12", "since").as_deref(), Some("12"));
        assert_eq!(
            param("a=1&since=2026-01-01T00%3A00%3A00.000Z", "since").as_deref(),
            Some("2026-01-01T00:00:00.000Z")
        );
        assert_eq!(param("a=1", "since"), None);
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%4"), "%4");
    }
}
