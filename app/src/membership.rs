//! Registration with the control plane: the instance registers as an app member, keeps
//! its lease alive with its load, and fails over between control-plane replicas. The
//! control plane then assigns it shards, and edges open business streams to it.

use std::sync::Arc;
use std::time::Duration;

use pylon_proto::control::membership_client::MembershipClient;
use pylon_proto::control::{KeepAliveRequest, Load, Member, MemberKind, RegisterRequest};
use pylon_service::control_link::{self, Backoff};
use tokio::sync::watch;
use tonic::{Code, Request};

use crate::config::Config;
use crate::directory::Directory;

/// A call with the cluster token and a deadline.
fn authed<T>(config: &Config, deadline: Duration, message: T) -> Request<T> {
    let mut request = pylon_proto::auth::with_bearer(message, config.cluster_token.as_deref());
    request.set_timeout(deadline);
    request
}

pub async fn run(config: Arc<Config>, directory: Arc<Directory>, mut stop: watch::Receiver<bool>) {
    let ttl = config.lease_ttl_secs.max(2);
    let period = Duration::from_secs(ttl.into()) / 3;
    let mut lease: Option<i64> = None;
    let with_auth = |message| authed(&config, period, message);
    let mut backoff = Backoff::default();
    for endpoint in config.control.iter().cycle() {
        let started = tokio::time::Instant::now();
        let channel = match control_link::endpoint(endpoint) {
            Ok(e) => e.connect().await,
            Err(e) => {
                tracing::error!(%endpoint, "bad control-plane endpoint: {e}");
                return;
            }
        };
        let mut client = match channel {
            Ok(channel) => MembershipClient::new(channel),
            Err(e) => {
                let wait = backoff.next_wait();
                tracing::warn!(%endpoint, "cannot reach the control plane: {e}; retrying in {wait:?}");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => continue,
                    _ = stop.changed() => return,
                }
            }
        };
        loop {
            let leaving = *stop.borrow();
            let outcome = match lease {
                None => client
                    .register(with_auth(RegisterRequest {
                        member: Some(Member {
                            id: config.app_id.clone(),
                            kind: MemberKind::App.into(),
                            grpc_address: config.grpc_address(),
                            capacity: config.capacity,
                            version: env!("CARGO_PKG_VERSION").into(),
                            ..Default::default()
                        }),
                        ttl_seconds: ttl,
                    }))
                    .await
                    .map(|reply| {
                        let id = reply.into_inner().lease_id;
                        tracing::info!(lease = id, "registered with the control plane");
                        lease = Some(id);
                    }),
                Some(id) => client
                    .keep_alive(authed(
                        &config,
                        period,
                        KeepAliveRequest {
                            member_id: config.app_id.clone(),
                            lease_id: id,
                            load: Some(Load {
                                sessions: directory.online_count() as u32,
                                leaving,
                            }),
                        },
                    ))
                    .await
                    .map(drop),
            };
            match outcome {
                Ok(()) => {}
                Err(status) if status.code() == Code::NotFound => {
                    tracing::warn!("the control plane no longer knows this instance's lease; registering again");
                    lease = None;
                    continue;
                }
                Err(status) if status.code() == Code::AlreadyExists => {
                    tracing::error!("{}", status.message());
                }
                Err(status) => {
                    tracing::warn!(%endpoint, "control plane call failed: {status}");
                    break;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = stop.changed() => {
                    // Leaving: the shards go to other instances at once.
                    if let Some(id) = lease {
                        let _ = client
                            .leave(authed(&config, period, pylon_proto::control::LeaveRequest {
                                member_id: config.app_id.clone(),
                                lease_id: id,
                            }))
                            .await;
                    }
                    return;
                }
            }
        }
        // The session failed: wait (less after one that lasted), then the next replica.
        backoff.session_ended(started.elapsed());
        let wait = backoff.next_wait();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}
