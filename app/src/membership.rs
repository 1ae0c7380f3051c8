//! The app instance's part in the control-plane link (`pylon_service::control_link`): it
//! registers as an app member with its business-stream address, reports how many piles
//! are online, and leaves when stopped so its shards go to other instances at once. The
//! control plane then assigns it shards, and edges open business streams to it.

use std::sync::Arc;

use pylon_proto::control::{Load, Member, MemberKind};
use pylon_service::control_link::{ControlLink, LinkSettings, Participant};
use tokio::sync::watch;

use crate::config::Config;
use crate::directory::Directory;

/// Registers and keeps the lease alive until `stop` turns true, then leaves.
pub async fn run(config: Arc<Config>, directory: Arc<Directory>, stop: watch::Receiver<bool>) {
    let settings = LinkSettings {
        endpoints: config.control.clone(),
        token: config.cluster_token.clone(),
        member: Some(Member {
            id: config.app_id.clone(),
            kind: MemberKind::App.into(),
            grpc_address: config.grpc_address(),
            http_address: config.http_address(),
            capacity: config.capacity,
            version: env!("CARGO_PKG_VERSION").into(),
            ..Default::default()
        }),
        lease_ttl_secs: config.lease_ttl_secs,
        subscriber: None,
    };
    ControlLink::new(settings, AppParticipant { directory })
        .run(stop)
        .await;
}

struct AppParticipant {
    directory: Arc<Directory>,
}

impl Participant for AppParticipant {
    fn load(&self) -> Load {
        Load {
            sessions: u32::try_from(self.directory.online_count()).unwrap_or(u32::MAX),
            leaving: false,
        }
    }
}
