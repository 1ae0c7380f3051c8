//! A small platform for business tests: one control plane (embedded registry), edges
//! that let the app decide logins, one `pylon-app` (SQLite or PostgreSQL) owning every
//! shard, and piles `FIRST_PILE + 1..=20` registered.

use std::time::Duration;

use pylon_bench::charger::{ChargerConn, ChargerError, Target};
use pylon_proto::ykc::{Frame, PileNo};
use tempfile::TempDir;

use crate::app::{AppOptions, AppProcess, Store};
use crate::certs::TestCerts;
use crate::control::{app_login_edge_flags, Backend, ControlOptions, ControlProcess};
use crate::edge::{EdgeOptions, EdgeProcess};
use crate::wait_for;

pub const FIRST_PILE: u64 = 32_010_200_000_001;

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

pub fn pile(n: u64) -> PileNo {
    PileNo::from_u64(FIRST_PILE + n)
}

pub fn pile_text(n: u64) -> String {
    format!("{:014}", FIRST_PILE + n)
}

pub struct Platform {
    pub edges: Vec<EdgeProcess>,
    pub app: AppProcess,
    pub control: ControlProcess,
    pub certs: TestCerts,
    pub dir: TempDir,
}

impl Platform {
    /// On SQLite, in the platform's directory.
    pub fn start(edges: usize, app_env: Vec<(String, String)>) -> Platform {
        Self::start_with(edges, app_env, None)
    }

    /// With the app on PostgreSQL at `postgres_url`, or on SQLite when `None`.
    pub fn start_with(
        edges: usize,
        app_env: Vec<(String, String)>,
        postgres_url: Option<String>,
    ) -> Platform {
        let dir = tempfile::tempdir().expect("temp dir");
        let certs = TestCerts::generate(dir.path()).expect("certs");
        let control = ControlProcess::start(ControlOptions {
            dir: dir.path(),
            replica: "c1",
            backend: Backend::Embedded(dir.path().join("registry.json")),
            extra: vec![],
        });
        let app = AppProcess::start(AppOptions {
            dir: dir.path(),
            id: "app-1",
            control: vec![control.grpc_url()],
            store: match postgres_url {
                Some(url) => Store::Postgres(url),
                None => Store::Sqlite(dir.path().join("app.db")),
            },
            env: app_env,
        });
        let mut platform = Platform {
            edges: Vec::new(),
            app,
            control,
            certs,
            dir,
        };
        for i in 0..edges {
            platform.add_edge(&format!("e{}", i + 1));
        }
        platform.wait_owned();
        platform.app.add_piles(FIRST_PILE, 20);
        platform
    }

    pub fn add_edge(&mut self, id: &str) {
        self.add_edge_with(id, Vec::new());
    }

    /// As [`Platform::add_edge`], with `extra` flags.
    pub fn add_edge_with(&mut self, id: &str, extra: Vec<String>) {
        let mut flags = app_login_edge_flags(id, &[self.control.grpc_url()]);
        flags.extend(extra);
        self.edges.push(EdgeProcess::start(EdgeOptions {
            certs: &self.certs,
            dir: self.dir.path(),
            executors: 2,
            extra: flags,
            with_rsa: false,
            tls_only: false,
            log_filter_from_file: false,
        }));
    }

    /// Waits until every shard is owned and every edge applied that table.
    pub fn wait_owned(&self) {
        wait_for("shards owned by the app", Duration::from_secs(20), || {
            (self.control.status()["shards_unowned"] == 0).then_some(())
        });
        let version = self.control.status()["route_version"].as_i64().unwrap_or(0);
        for edge in &self.edges {
            wait_for(
                "edges to apply the shard map",
                Duration::from_secs(20),
                || (edge.status()["route_version"].as_i64() >= Some(version)).then_some(()),
            );
        }
    }

    pub fn target(&self, edge: usize) -> Target {
        Target {
            addr: self.edges[edge].tcp,
            tls: None,
        }
    }
}

pub async fn connect(target: &Target, n: u64) -> Result<ChargerConn, ChargerError> {
    let mut conn = ChargerConn::connect(target, None).await?;
    conn.login(pile(n)).await?;
    Ok(conn)
}

/// The next frame that is not a heartbeat reply.
pub async fn next(conn: &mut ChargerConn, what: &'static str) -> (u16, Frame) {
    loop {
        let (seq, frame) = conn
            .recv_timeout(what, Duration::from_secs(15))
            .await
            .unwrap_or_else(|e| panic!("waiting for {what}: {e}"));
        if !matches!(frame, Frame::HeartbeatReply(_)) {
            return (seq, frame);
        }
    }
}
