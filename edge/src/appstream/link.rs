//! One app instance's link: its `Business.Exchange` streams, one after another, around a
//! [`LinkWindow`] that keeps what is unacknowledged.

use pylon_proto::ykc::PileCipher;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use pylon_proto::app::business_client::BusinessClient;
use pylon_proto::app::{
    app_message, edge_message, CommandResult, EdgeMessage, Hello, PileOffline, PileOnline,
    Uplink as UplinkProto,
};
use pylon_proto::ykc::{Frame, PileNo};
use tokio::sync::{mpsc, watch};
use tonic::transport::Endpoint;

use pylon_service::control_link::Backoff;

use super::state::{AppTarget, LinkWindow, Outgoing, UplinkEvent, BACKOFF_MAX, BACKOFF_MIN};
use super::{LinkHandle, LinkInput};
use crate::executor::{DownlinkOutcome, EdgeShared, ExecutorHandle};
use crate::uplink::UplinkMessage;

/// Inputs queued per link.
const LINK_QUEUE: usize = 1024;

/// Starts the link task for `target`; the router keeps the returned handle.
pub(super) fn spawn(
    shared: Arc<EdgeShared>,
    executors: ExecutorHandle,
    target: Arc<AppTarget>,
    returns: mpsc::UnboundedSender<Vec<UplinkMessage>>,
) -> LinkHandle {
    let (tx, rx) = mpsc::channel(LINK_QUEUE);
    let (close, closed) = watch::channel(false);
    tokio::spawn(run(shared, executors, target.clone(), rx, closed, returns));
    LinkHandle {
        target,
        tx,
        close,
        overflow: VecDeque::new(),
    }
}

/// What the window hands out, as protobuf; `None` for a frame that cannot be encoded.
fn to_proto(out: Outgoing<'_>) -> Option<EdgeMessage> {
    let body = match out {
        Outgoing::Uplink { id, message: m } => {
            let mut body = Vec::new();
            m.frame.encode_body(&mut body).ok()?;
            edge_message::Body::Uplink(UplinkProto {
                id,
                pile: m.pile.to_string(),
                session_id: m.session_id,
                executor: m.executor as u32,
                seq: u32::from(m.seq),
                frame_type: u32::from(m.frame.frame_type()),
                body,
            })
        }
        Outgoing::Online {
            pile,
            session_id,
            executor,
        } => edge_message::Body::Online(PileOnline {
            pile: pile.to_string(),
            session_id,
            executor: executor as u32,
        }),
        Outgoing::Offline {
            pile,
            session_id,
            reason,
        } => edge_message::Body::Offline(PileOffline {
            pile: pile.to_string(),
            session_id,
            reason: reason.to_owned(),
        }),
    };
    Some(EdgeMessage { body: Some(body) })
}

/// Takes an event into the window and gives what to send (a frame that cannot be encoded
/// leaves the window at once: it could never be acknowledged).
fn take(window: &mut LinkWindow, event: UplinkEvent) -> Option<EdgeMessage> {
    let out = window.take(event);
    let id = match out {
        Outgoing::Uplink { id, .. } => Some(id),
        _ => None,
    };
    let message = to_proto(out);
    if message.is_none() {
        if let Some(id) = id {
            window.forget(id);
        }
    }
    message
}

async fn run(
    shared: Arc<EdgeShared>,
    executors: ExecutorHandle,
    target: Arc<AppTarget>,
    mut input: mpsc::Receiver<LinkInput>,
    mut closed: watch::Receiver<bool>,
    returns: mpsc::UnboundedSender<Vec<UplinkMessage>>,
) {
    let mut state = LinkWindow::default();
    let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
    loop {
        let outcome = stream(
            &shared,
            &executors,
            &target,
            &mut input,
            &mut closed,
            &mut state,
        )
        .await;
        let done = match outcome {
            Ok(()) => true,
            Err(e) => {
                shared.metrics.app_stream_errors.inc();
                tracing::warn!(app = %target.id, address = %target.grpc_address, "business stream lost: {e}");
                // While away, take events up to the window (they go out on the next
                // stream); beyond it they wait in the router.
                let wait = tokio::time::sleep(backoff.next_wait());
                tokio::pin!(wait);
                let mut done = *closed.borrow();
                while !done {
                    tokio::select! {
                        _ = &mut wait => break,
                        _ = closed.changed() => done = true,
                        inp = input.recv(), if state.has_room() => match inp {
                            None => done = true,
                            Some(LinkInput::Event(e)) => {
                                let _ = take(&mut state, e);
                            }
                        },
                    }
                }
                done
            }
        };
        if done {
            // Anything still queued for this link goes back too.
            input.close();
            while let Ok(LinkInput::Event(e)) = input.try_recv() {
                let _ = take(&mut state, e);
            }
            let frames: Vec<UplinkMessage> = state.hand_over();
            if !frames.is_empty() {
                tracing::info!(app = %target.id, frames = frames.len(), "handing unacknowledged frames to the new owner");
                let _ = returns.send(frames);
            }
            return;
        }
    }
}

/// One stream's life. `Ok`: the link is closed for good (after draining); `Err`: reconnect.
async fn stream(
    shared: &Arc<EdgeShared>,
    executors: &ExecutorHandle,
    target: &AppTarget,
    input: &mut mpsc::Receiver<LinkInput>,
    closed: &mut watch::Receiver<bool>,
    state: &mut LinkWindow,
) -> Result<(), String> {
    let url = format!(
        "{}://{}",
        pylon_service::tls::grpc_scheme(),
        target.grpc_address
    );
    let endpoint = Endpoint::from_shared(url)
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(3))
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5));
    let channel = pylon_service::tls::channel(endpoint)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let token: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>> = shared
        .config
        .control
        .token
        .as_ref()
        .and_then(|t| format!("Bearer {t}").parse().ok());
    let mut client = BusinessClient::with_interceptor(channel, move |mut r: tonic::Request<()>| {
        if let Some(t) = &token {
            r.metadata_mut().insert("authorization", t.clone());
        }
        Ok(r)
    });
    // Unbounded on purpose: uplinks are bounded by the window, announcements by the
    // piles connected here; sending must never wait, or acknowledgements (which free
    // the window) would not be read: the edge and the instance would wait on each other.
    let (out, out_rx) = mpsc::unbounded_channel::<EdgeMessage>();
    let hello = EdgeMessage {
        body: Some(edge_message::Body::Hello(Hello {
            edge_id: shared.edge_id.to_string(),
        })),
    };
    let send = |message: EdgeMessage| {
        out.send(message)
            .map_err(|_| "the stream closed".to_string())
    };
    send(hello)?;
    let mut inbound = client
        .exchange(tokio_stream::wrappers::UnboundedReceiverStream::new(out_rx))
        .await
        .map_err(|e| format!("the instance refused the stream: {e}"))?
        .into_inner();
    // A fresh stream: ids start at 1 again, and the instance learns our piles first.
    for out in state.restart() {
        if let Some(message) = to_proto(out) {
            // A closed stream ends this attempt; the frames stay unacknowledged.
            send(message)?;
        }
    }
    shared.metrics.app_streams.inc();
    tracing::info!(app = %target.id, address = %target.grpc_address, "business stream open");
    let mut draining: Option<tokio::time::Instant> = None;
    let result = loop {
        if draining.is_some_and(|since| state.drained(since.elapsed())) {
            break Ok(());
        }
        tokio::select! {
            _ = closed.changed(), if draining.is_none() => {
                // Let the old owner finish what it has before the rest moves on.
                draining = Some(tokio::time::Instant::now());
            }
            _ = tokio::time::sleep(Duration::from_millis(100)), if draining.is_some() => {}
            inp = input.recv(), if state.has_room() && draining.is_none() => {
                match inp {
                    None => break Ok(()),
                    Some(LinkInput::Event(event)) => {
                        if let Some(message) = take(state, event) {
                            if out.send(message).is_err() {
                                break Err("the stream closed".to_string());
                            }
                        }
                    }
                }
            }
            message = inbound.message() => {
                let message = match message {
                    Ok(Some(m)) => m,
                    Ok(None) => break Err("the instance ended the stream".to_string()),
                    Err(status) => break Err(status.to_string()),
                };
                match message.body {
                    Some(app_message::Body::Ack(ack)) => state.ack(ack.up_to),
                    Some(app_message::Body::Verdict(v)) => {
                        let cipher = (!v.cipher.is_empty())
                            .then(|| serde_json::from_slice::<PileCipher>(&v.cipher))
                            .transpose();
                        match cipher {
                            Ok(cipher) => executors.login_verdict(
                                v.executor as usize,
                                v.session_id,
                                Some((v.accepted, cipher.map(Box::new))),
                            ),
                            Err(e) => {
                                tracing::error!(pile = %v.pile, "unreadable cipher in a login verdict, login refused: {e}");
                                executors.login_verdict(v.executor as usize, v.session_id, Some((false, None)));
                            }
                        }
                    }
                    Some(app_message::Body::Downlink(d)) => {
                        // Queued without waiting (one wait per frame would cap a stream
                        // at the executors' wake-up rate); the outcome is reported
                        // back only for commands that asked.
                        let outcome = deliver(executors, state, &d);
                        let out = out.clone();
                        tokio::spawn(async move {
                            let outcome = outcome.await;
                            if d.command_id != 0 && !matches!(outcome, DownlinkOutcome::Queued { .. }) {
                                let (label, detail) = match &outcome {
                                    DownlinkOutcome::NotConnected => ("not_connected", String::new()),
                                    DownlinkOutcome::Failed { reason } => ("failed", reason.clone()),
                                    DownlinkOutcome::Queued { .. } => ("queued", String::new()),
                                };
                                let result = EdgeMessage {
                                    body: Some(edge_message::Body::Result(CommandResult {
                                        command_id: d.command_id,
                                        outcome: label.into(),
                                        detail,
                                    })),
                                };
                                let _ = out.send(result);
                            }
                        });
                    }
                    None => {}
                }
            }
        }
    };
    shared.metrics.app_streams.dec();
    result
}

/// Hands a downlink to the executor holding the pile; the returned future resolves to
/// the outcome (nothing waits for it unless the app asked).
fn deliver(
    executors: &ExecutorHandle,
    state: &LinkWindow,
    d: &pylon_proto::app::Downlink,
) -> impl std::future::Future<Output = DownlinkOutcome> + Send + 'static {
    let parsed = PileNo::parse(&d.pile)
        .map_err(|_| format!("{:?} is not a pile number", d.pile))
        .and_then(|pile| {
            let frame = u8::try_from(d.frame_type)
                .map_err(|_| "frame type out of range".to_string())
                .and_then(|t| Frame::decode_body(t, &d.body).map_err(|e| e.to_string()))?;
            Ok((pile, frame))
        });
    let reply_to = d.reply_to_seq.map(|s| s as u16);
    let executors = executors.clone();
    let known = parsed
        .as_ref()
        .ok()
        .and_then(|(pile, _)| state.executor_of(pile));
    // Queued now, in arrival order, when the pile's executor is known.
    let queued = match (&parsed, known) {
        (Ok((pile, frame)), Some(executor)) => {
            Some(executors.enqueue_to(executor, *pile, frame.clone(), reply_to))
        }
        _ => None,
    };
    async move {
        let (pile, frame) = match parsed {
            Ok(p) => p,
            Err(reason) => return DownlinkOutcome::Failed { reason },
        };
        if let Some(rx) = queued {
            return rx
                .recv_async()
                .await
                .unwrap_or(DownlinkOutcome::NotConnected);
        }
        // Not announced (yet): ask every executor.
        let mut found = DownlinkOutcome::NotConnected;
        for executor in 0..executors.len() {
            found = executors
                .send_to(executor, pile, frame.clone(), reply_to)
                .await;
            if !matches!(found, DownlinkOutcome::NotConnected) {
                break;
            }
        }
        found
    }
}
