//! A small charging platform for tests that need records flowing: a control plane
//! (embedded registry), one app instance on a given store, one edge, and a fleet charging
//! through it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::app::{AppOptions, AppProcess, Store};
use crate::certs::TestCerts;
use crate::control::{app_login_edge_flags, Backend, ControlOptions, ControlProcess};
use crate::edge::{EdgeOptions, EdgeProcess};
use crate::fleet::{ChargingFleet, Reach};
use crate::wait_for;

/// A control plane (embedded registry in `dir`), one app instance on `store`, one edge,
/// and a fleet charging through it.
pub struct ChargingPlatform {
    pub control: ControlProcess,
    pub app: AppProcess,
    _edge: EdgeProcess,
    pub fleet: ChargingFleet,
    store: Store,
    dir: PathBuf,
}

impl ChargingPlatform {
    /// `chargers` piles from `first_pile`, each with an account, charging for a second at
    /// a time; returns once 20 records are confirmed.
    pub fn start(
        dir: &Path,
        certs: &TestCerts,
        store: Store,
        first_pile: u64,
        chargers: u64,
    ) -> ChargingPlatform {
        let control = ControlProcess::start(ControlOptions {
            dir,
            replica: "c1",
            backend: Backend::Embedded(dir.join("registry.json")),
            extra: vec![],
        });
        let app = AppProcess::start(AppOptions {
            dir,
            id: "app-1",
            control: vec![control.grpc_url()],
            store: store.clone(),
            env: vec![],
        });
        let edge = EdgeProcess::start(EdgeOptions {
            certs,
            dir,
            executors: 1,
            extra: app_login_edge_flags("e1", &[control.grpc_url()]),
            with_rsa: false,
            tls_only: false,
            log_filter_from_file: false,
        });
        wait_for("app-1 to own every shard", Duration::from_secs(20), || {
            (control.get("/v1/admin/shards")["per_app"]["app-1"] == 1024).then_some(())
        });
        app.add_piles(first_pile, chargers);
        pylon_bench::accounts::provision(
            &format!("http://{}", app.http),
            crate::control::ADMIN_TOKEN,
            first_pile,
            chargers,
            1_000_000,
        )
        .expect("accounts for the fleet");
        let fleet = ChargingFleet::start(dir, Reach::Edge(edge.tcp), first_pile, chargers, 1, 3);
        fleet.wait_confirmed(20, Duration::from_secs(60));
        ChargingPlatform {
            control,
            app,
            _edge: edge,
            fleet,
            store,
            dir: dir.to_owned(),
        }
    }

    /// Starts the app instance again where it was (after it was killed).
    pub fn restart_app(&mut self) {
        self.app = AppProcess::start_on(
            AppOptions {
                dir: &self.dir,
                id: "app-1",
                control: vec![self.control.grpc_url()],
                store: self.store.clone(),
                env: vec![],
            },
            self.app.grpc,
            self.app.http,
        );
    }
}
