//! The registry's conformance suite: every behaviour written once against `dyn Registry` and
//! run against both backends, the embedded file and a real etcd; plus the embedded file's
//! restart and corruption cases and an etcd leader fail-over with a 3-member cluster.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pylon_control::registry::embedded::EmbeddedRegistry;
use pylon_control::registry::etcd::{EtcdAccess, EtcdRegistry};
use pylon_control::registry::{Registry, RegistryError, WatchEvent, WatchStream};
use pylon_service::tls::{ClusterTls, TlsFiles};
use pylon_tests::etcd::{EtcdCluster, PYLON_PASSWORD, PYLON_USER};

/// A registry and whatever must live as long as it (dropped after it).
struct Backend {
    registry: Arc<dyn Registry>,
    _dir: Option<tempfile::TempDir>,
    _etcd: Option<EtcdCluster>,
}

/// The registry's logs (fail-over warnings, expiries) in the output of a failed test.
fn logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "pylon_control=debug,warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

fn embedded() -> Backend {
    logs();
    let dir = tempfile::tempdir().expect("temporary directory");
    let registry =
        EmbeddedRegistry::open(&dir.path().join("registry.json")).expect("opening the registry");
    Backend {
        registry,
        _dir: Some(dir),
        _etcd: None,
    }
}

async fn etcd() -> Backend {
    logs();
    let cluster = EtcdCluster::start(1).await.expect("starting etcd");
    let registry = EtcdRegistry::connect(cluster.endpoints(), EtcdAccess::default())
        .await
        .expect("connecting to etcd");
    Backend {
        registry,
        _dir: None,
        _etcd: Some(cluster),
    }
}

/// Runs each named behaviour against both backends, as `embedded::<name>` and `etcd::<name>`.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let backend = super::embedded();
                    assert_eq!(backend.registry.backend(), "embedded");
                    super::$name(backend.registry.clone()).await;
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let backend = super::etcd().await;
                    assert_eq!(backend.registry.backend(), "etcd");
                    super::$name(backend.registry.clone()).await;
                }
            )*
        }
    };
}

conformance!(
    put_get_list,
    create_only_if_absent,
    put_guarded,
    delete,
    lease_expiry_deletes_keys,
    keep_alive_keeps_keys,
    revoke_ends_the_lease,
    watch_from_a_listing,
);

const EVENT_WAIT: Duration = Duration::from_secs(5);

async fn next_event(stream: &mut WatchStream) -> WatchEvent {
    match tokio::time::timeout(EVENT_WAIT, stream.recv()).await {
        Ok(Some(event)) => event,
        Ok(None) => panic!("the watch closed"),
        Err(_) => panic!("no watch event within {EVENT_WAIT:?}"),
    }
}

async fn assert_quiet(stream: &mut WatchStream, wait: Duration) {
    if let Ok(Some(event)) = tokio::time::timeout(wait, stream.recv()).await {
        panic!("unexpected watch event {event:?}");
    }
}

fn keys(items: &[pylon_control::registry::KeyValue]) -> Vec<&str> {
    items.iter().map(|kv| kv.key.as_str()).collect()
}

/// Waits up to `limit` for `key` to disappear.
async fn wait_gone(registry: &dyn Registry, key: &str, limit: Duration) {
    let start = Instant::now();
    while registry.get(key).await.expect("get").is_some() {
        assert!(
            start.elapsed() < limit,
            "{key} still exists after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn put_get_list(r: Arc<dyn Registry>) {
    let r1 = r.put("t/b", b"2".to_vec(), None).await.unwrap();
    let r2 = r.put("t/a", b"1".to_vec(), None).await.unwrap();
    let r3 = r.put("u/c", b"3".to_vec(), None).await.unwrap();
    assert!(r1 < r2 && r2 < r3, "revisions grow: {r1} {r2} {r3}");

    let a = r.get("t/a").await.unwrap().expect("t/a exists");
    assert_eq!(a.value, b"1");
    assert_eq!(a.mod_revision, r2);
    assert_eq!(a.lease, None);
    assert!(r.get("t/zz").await.unwrap().is_none());
    assert!(
        r.get("t/").await.unwrap().is_none(),
        "get is exact, not a prefix"
    );

    let listing = r.list("t/").await.unwrap();
    assert_eq!(keys(&listing.items), ["t/a", "t/b"]);
    assert_eq!(listing.revision, r3);
    let all = r.list("").await.unwrap();
    assert_eq!(keys(&all.items), ["t/a", "t/b", "u/c"]);
    assert!(r.list("v/").await.unwrap().items.is_empty());

    let r4 = r.put("t/a", b"1b".to_vec(), None).await.unwrap();
    assert!(r4 > r3);
    let a = r.get("t/a").await.unwrap().expect("t/a exists");
    assert_eq!((a.value.as_slice(), a.mod_revision), (&b"1b"[..], r4));
    assert_eq!(r.list("t/").await.unwrap().revision, r4);
}

async fn create_only_if_absent(r: Arc<dyn Registry>) {
    assert!(r.create("c/k", b"first".to_vec(), None).await.unwrap());
    assert!(!r.create("c/k", b"second".to_vec(), None).await.unwrap());
    assert_eq!(r.get("c/k").await.unwrap().unwrap().value, b"first");
    r.delete("c/k").await.unwrap();
    assert!(r.create("c/k", b"third".to_vec(), None).await.unwrap());
    assert_eq!(r.get("c/k").await.unwrap().unwrap().value, b"third");
}

async fn put_guarded(r: Arc<dyn Registry>) {
    assert!(!r
        .put_guarded("g/leader", b"me", "g/map", b"v1".to_vec())
        .await
        .unwrap());
    assert!(
        r.get("g/map").await.unwrap().is_none(),
        "no guard, no write"
    );

    r.put("g/leader", b"you".to_vec(), None).await.unwrap();
    assert!(!r
        .put_guarded("g/leader", b"me", "g/map", b"v1".to_vec())
        .await
        .unwrap());
    assert!(
        r.get("g/map").await.unwrap().is_none(),
        "wrong guard, no write"
    );

    r.put("g/leader", b"me".to_vec(), None).await.unwrap();
    assert!(r
        .put_guarded("g/leader", b"me", "g/map", b"v2".to_vec())
        .await
        .unwrap());
    assert_eq!(r.get("g/map").await.unwrap().unwrap().value, b"v2");
}

async fn delete(r: Arc<dyn Registry>) {
    let put = r.put("d/k", b"v".to_vec(), None).await.unwrap();
    r.put("d/other", b"v".to_vec(), None).await.unwrap();
    let listing = r.list("d/").await.unwrap();
    let mut watch = r.watch("d/", listing.revision).await.unwrap();
    r.delete("d/k").await.unwrap();
    assert!(r.get("d/k").await.unwrap().is_none());
    assert_eq!(keys(&r.list("d/").await.unwrap().items), ["d/other"]);
    match next_event(&mut watch).await {
        WatchEvent::Delete { key, revision } => {
            assert_eq!(key, "d/k");
            assert!(revision > put);
        }
        other => panic!("expected the delete, got {other:?}"),
    }
    // Deleting a missing key is fine and changes nothing.
    let before = r.list("").await.unwrap().revision;
    r.delete("d/k").await.unwrap();
    r.delete("d/never").await.unwrap();
    assert_eq!(r.list("").await.unwrap().revision, before);
    assert_quiet(&mut watch, Duration::from_millis(300)).await;
}

async fn lease_expiry_deletes_keys(r: Arc<dyn Registry>) {
    let lease = r.grant_lease(Duration::from_secs(1)).await.unwrap();
    r.put("l/a", b"1".to_vec(), Some(lease)).await.unwrap();
    r.put("l/b", b"2".to_vec(), Some(lease)).await.unwrap();
    r.put("l/kept", b"3".to_vec(), None).await.unwrap();
    assert_eq!(r.get("l/a").await.unwrap().unwrap().lease, Some(lease));
    let listing = r.list("l/").await.unwrap();
    let mut watch = r.watch("l/", listing.revision).await.unwrap();

    let start = Instant::now();
    wait_gone(&*r, "l/a", Duration::from_secs(4)).await;
    let expired_after = start.elapsed();
    assert!(r.get("l/b").await.unwrap().is_none());
    assert!(r.get("l/kept").await.unwrap().is_some());
    let mut deleted = Vec::new();
    for _ in 0..2 {
        match next_event(&mut watch).await {
            WatchEvent::Delete { key, revision } => {
                assert!(revision > listing.revision);
                deleted.push(key);
            }
            other => panic!("expected deletes, got {other:?}"),
        }
    }
    deleted.sort();
    assert_eq!(deleted, ["l/a", "l/b"]);
    assert!(matches!(
        r.keep_alive(lease).await,
        Err(RegistryError::LeaseNotFound(id)) if id == lease
    ));
    eprintln!("a 1 s lease ended after {expired_after:?}");
}

async fn keep_alive_keeps_keys(r: Arc<dyn Registry>) {
    // Less than a second rounds up to one.
    let lease = r.grant_lease(Duration::from_millis(300)).await.unwrap();
    r.put("k/member", b"1".to_vec(), Some(lease)).await.unwrap();
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(2500) {
        let ttl = r.keep_alive(lease).await.unwrap();
        assert_eq!(ttl, Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let kv = r.get("k/member").await.unwrap().expect("kept alive");
    assert_eq!(kv.lease, Some(lease));
}

async fn revoke_ends_the_lease(r: Arc<dyn Registry>) {
    let lease = r.grant_lease(Duration::from_secs(30)).await.unwrap();
    r.put("r/a", b"1".to_vec(), Some(lease)).await.unwrap();
    r.put("r/b", b"2".to_vec(), Some(lease)).await.unwrap();
    let listing = r.list("r/").await.unwrap();
    let mut watch = r.watch("r/", listing.revision).await.unwrap();

    r.revoke(lease).await.unwrap();
    assert!(r.list("r/").await.unwrap().items.is_empty());
    let mut deleted = Vec::new();
    for _ in 0..2 {
        match next_event(&mut watch).await {
            WatchEvent::Delete { key, .. } => deleted.push(key),
            other => panic!("expected deletes, got {other:?}"),
        }
    }
    deleted.sort();
    assert_eq!(deleted, ["r/a", "r/b"]);

    let not_found = |result: Result<_, RegistryError>| matches!(result, Err(RegistryError::LeaseNotFound(id)) if id == lease);
    assert!(not_found(r.keep_alive(lease).await.map(|_| ())));
    assert!(not_found(
        r.put("r/c", b"3".to_vec(), Some(lease)).await.map(|_| ())
    ));
    assert!(not_found(
        r.create("r/c", b"3".to_vec(), Some(lease))
            .await
            .map(|_| ())
    ));
    assert!(r.get("r/c").await.unwrap().is_none());
    // Revoking again, or a lease never granted, is not an error.
    r.revoke(lease).await.unwrap();
    r.revoke(0x7e57).await.unwrap();
}

async fn watch_from_a_listing(r: Arc<dyn Registry>) {
    r.put("w/early", b"0".to_vec(), None).await.unwrap();
    let listing = r.list("w/").await.unwrap();
    assert_eq!(keys(&listing.items), ["w/early"]);
    let mut watch = r.watch("w/", listing.revision).await.unwrap();

    let p1 = r.put("w/1", b"1".to_vec(), None).await.unwrap();
    r.put("x/outside", b"x".to_vec(), None).await.unwrap();
    let p2 = r.put("w/2", b"2".to_vec(), None).await.unwrap();
    r.delete("w/1").await.unwrap();
    let lease = r.grant_lease(Duration::from_secs(30)).await.unwrap();
    let p3 = r.put("w/leased", b"3".to_vec(), Some(lease)).await.unwrap();

    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(next_event(&mut watch).await);
    }
    let summary: Vec<(&str, &str)> = seen
        .iter()
        .map(|e| match e {
            WatchEvent::Put(kv) => ("put", kv.key.as_str()),
            WatchEvent::Delete { key, .. } => ("delete", key.as_str()),
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("put", "w/1"),
            ("put", "w/2"),
            ("delete", "w/1"),
            ("put", "w/leased")
        ]
    );
    assert_eq!(seen[0].revision(), p1);
    assert_eq!(seen[1].revision(), p2);
    assert!(seen[2].revision() > p2 && seen[2].revision() < p3);
    match &seen[3] {
        WatchEvent::Put(kv) => {
            assert_eq!((kv.value.as_slice(), kv.mod_revision), (&b"3"[..], p3));
            assert_eq!(kv.lease, Some(lease));
        }
        other => panic!("expected a put, got {other:?}"),
    }
    assert_quiet(&mut watch, Duration::from_millis(300)).await;

    // A watch from an earlier revision replays the history first.
    let mut replay = r.watch("w/", 0).await.unwrap();
    assert_eq!(next_event(&mut replay).await.key(), "w/early");
    let rest: Vec<WatchEvent> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(next_event(&mut replay).await);
        }
        v
    };
    assert_eq!(rest, seen);
    drop(replay);
    // Dropping one watch leaves the others working.
    let p4 = r.put("w/3", b"4".to_vec(), None).await.unwrap();
    assert_eq!(next_event(&mut watch).await.revision(), p4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_reopen_restores_keys_and_leases() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.json");
    let r = EmbeddedRegistry::open(&path).unwrap();
    r.put("p/plain", b"1".to_vec(), None).await.unwrap();
    let lease = r.grant_lease(Duration::from_secs(1)).await.unwrap();
    r.put("p/member", b"2".to_vec(), Some(lease)).await.unwrap();
    let before = r.list("").await.unwrap();
    drop(r);

    let r = EmbeddedRegistry::open(&path).unwrap();
    let after = r.list("").await.unwrap();
    assert_eq!(after.revision, before.revision);
    assert_eq!(after.items, before.items);
    assert_eq!(r.get("p/member").await.unwrap().unwrap().lease, Some(lease));
    // History is not kept across a restart: older watches must list again.
    assert!(matches!(
        r.watch("p/", 0).await,
        Err(RegistryError::Compacted(rev)) if rev == before.revision + 1
    ));
    let mut watch = r.watch("p/", after.revision).await.unwrap();

    // The lease outlives its TTL while kept alive after the restart...
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(2000) {
        assert_eq!(r.keep_alive(lease).await.unwrap(), Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(r.get("p/member").await.unwrap().is_some());
    // ...and ends without keep-alives.
    wait_gone(&*r, "p/member", Duration::from_secs(4)).await;
    assert_eq!(next_event(&mut watch).await.key(), "p/member");

    // Revisions continue; lease ids are not handed out twice.
    let rev = r.put("p/next", b"3".to_vec(), None).await.unwrap();
    assert!(rev > before.revision);
    let second = r.grant_lease(Duration::from_secs(5)).await.unwrap();
    assert_ne!(second, lease);
    drop(watch);
    drop(r);

    // The expiry was written too.
    let r = EmbeddedRegistry::open(&path).unwrap();
    assert_eq!(
        keys(&r.list("p/").await.unwrap().items),
        ["p/next", "p/plain"]
    );
    assert!(matches!(
        r.keep_alive(lease).await,
        Err(RegistryError::LeaseNotFound(_))
    ));
    r.keep_alive(second).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_corrupt_file_is_a_storage_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.json");
    let cases: [&[u8]; 4] = [
        b"{ not json",
        b"",
        br#"{"version":99,"revision":1,"next_lease":1,"leases":[],"keys":[]}"#,
        br#"{"version":1,"revision":1,"next_lease":1,"leases":[],"keys":[{"key":"a","value":"00","mod_revision":1,"lease":7}]}"#,
    ];
    for bytes in cases {
        std::fs::write(&path, bytes).unwrap();
        match EmbeddedRegistry::open(&path) {
            Err(RegistryError::Storage(message)) => {
                assert!(message.contains("registry.json"), "{message}")
            }
            Err(e) => panic!("expected a storage error, got {e}"),
            Ok(_) => panic!("opened a corrupt file: {}", String::from_utf8_lossy(bytes)),
        }
    }
    // The corrupt file is left for the operator to look at.
    assert_eq!(std::fs::read(&path).unwrap(), cases[3]);
}

/// Kills the etcd leader under an `EtcdRegistry` that talks to it, and checks that the
/// registry keeps working through the other two members.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_survives_losing_the_leader() {
    logs();
    let mut cluster = EtcdCluster::start(3).await.expect("starting etcd");
    let leader = cluster.leader_index().await.expect("a leader");
    // The registry starts on the leader's endpoint, the one about to die.
    let mut endpoints = cluster.endpoints();
    endpoints.rotate_left(leader);
    let r = EtcdRegistry::connect(endpoints, EtcdAccess::default())
        .await
        .unwrap();
    let lease = r.grant_lease(Duration::from_secs(5)).await.unwrap();
    r.put("f/member", b"m".to_vec(), Some(lease)).await.unwrap();
    r.put("f/a", b"a".to_vec(), None).await.unwrap();

    cluster.kill(leader);
    let killed = Instant::now();
    let limit = Duration::from_secs(10);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let attempt = async {
            r.put("f/b", b"b".to_vec(), None).await?;
            let listing = r.list("f/").await?;
            assert_eq!(keys(&listing.items), ["f/a", "f/b", "f/member"]);
            assert_eq!(r.keep_alive(lease).await?, Duration::from_secs(5));
            let mut watch = r.watch("f/", listing.revision).await?;
            let put = r.put("f/c", b"c".to_vec(), None).await?;
            Ok::<_, RegistryError>((watch.recv().await, put))
        };
        match tokio::time::timeout(limit, attempt).await {
            Ok(Ok((Some(event), put))) => {
                assert_eq!((event.key(), event.revision()), ("f/c", put));
                break;
            }
            Ok(Ok((None, _))) => eprintln!("attempt {attempts}: the watch closed"),
            Ok(Err(e)) => eprintln!("attempt {attempts}: {e}"),
            Err(_) => eprintln!("attempt {attempts}: timed out"),
        }
        assert!(
            killed.elapsed() < limit,
            "the registry did not recover within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "put, list, keep-alive and watch worked {:?} after killing the leader ({attempts} attempt(s))",
        killed.elapsed()
    );
    let new_leader = cluster.leader_index().await.expect("a new leader");
    assert_ne!(new_leader, leader);
}

/// etcd answers a watch from compacted history with a created watch that is then cancelled;
/// the registry closes the channel (the embedded registry refuses the watch instead, see
/// `embedded_reopen_restores_keys_and_leases`). Either way the caller lists again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_watch_from_compacted_history_closes() {
    logs();
    let cluster = EtcdCluster::start(1).await.expect("starting etcd");
    let r = EtcdRegistry::connect(cluster.endpoints(), EtcdAccess::default())
        .await
        .unwrap();
    let first = r.put("h/a", b"1".to_vec(), None).await.unwrap();
    r.put("h/a", b"2".to_vec(), None).await.unwrap();
    let last = r.put("h/a", b"3".to_vec(), None).await.unwrap();
    let mut client = etcd_client::Client::connect(cluster.endpoints(), None)
        .await
        .unwrap();
    client.compact(last, None).await.unwrap();

    match r.watch("h/", first).await {
        Err(RegistryError::Compacted(rev)) => assert_eq!(rev, last),
        Err(e) => panic!("expected Compacted, got {e}"),
        Ok(mut watch) => {
            let end = tokio::time::timeout(EVENT_WAIT, watch.recv()).await;
            assert!(
                matches!(end, Ok(None)),
                "expected the watch to close, got {end:?}"
            );
        }
    }
    // From the compaction point on, watching works.
    let mut watch = r.watch("h/", last).await.unwrap();
    let put = r.put("h/b", b"4".to_vec(), None).await.unwrap();
    assert_eq!(next_event(&mut watch).await.revision(), put);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_unreachable_is_unavailable() {
    logs();
    let endpoints = vec![
        format!("http://127.0.0.1:{}", pylon_tests::free_port()),
        format!("http://127.0.0.1:{}", pylon_tests::free_port()),
    ];
    let start = Instant::now();
    match EtcdRegistry::connect(endpoints, EtcdAccess::default()).await {
        Err(RegistryError::Unavailable(message)) => {
            assert!(message.contains("127.0.0.1"), "{message}")
        }
        Err(e) => panic!("expected Unavailable, got {e}"),
        Ok(_) => panic!("connected to nothing"),
    }
    // Refused connections fail over at once; no request timeouts.
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

/// Leases, keys on them, create-if-absent, a listing, a watch, a delete and a revoke under
/// `prefix`: every kind of request the control plane makes.
async fn every_kind_of_request(r: &dyn Registry, prefix: &str) {
    let lease = r.grant_lease(Duration::from_secs(5)).await.expect("lease");
    let key = format!("{prefix}member");
    r.put(&key, b"m".to_vec(), Some(lease)).await.expect("put");
    assert!(r
        .create(&format!("{prefix}once"), b"1".to_vec(), None)
        .await
        .expect("create"));
    assert!(!r
        .create(&format!("{prefix}once"), b"2".to_vec(), None)
        .await
        .expect("create"));
    assert_eq!(
        r.keep_alive(lease).await.expect("keep-alive"),
        Duration::from_secs(5)
    );
    let listing = r.list(prefix).await.expect("list");
    assert_eq!(listing.items.len(), 2);
    let mut watch = r.watch(prefix, listing.revision).await.expect("watch");
    let put = r
        .put(&format!("{prefix}later"), b"x".to_vec(), None)
        .await
        .expect("put");
    assert_eq!(next_event(&mut watch).await.revision(), put);
    r.delete(&format!("{prefix}once")).await.expect("delete");
    r.revoke(lease).await.expect("revoke");
    wait_gone(r, &key, Duration::from_secs(5)).await;
}

/// etcd as production runs it: TLS with client certificates (`--client-cert-auth`) and its
/// own users, Pylon's role limited to `/pylon`. The registry works through it with a
/// password, or with its certificate's name alone; what should not get in does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_with_client_certificates_and_users() {
    logs();
    let cluster = EtcdCluster::start_secure(1)
        .await
        .expect("starting a secure etcd");
    let certs = cluster.certs().expect("a secure cluster");
    let endpoints = cluster.endpoints();
    assert!(endpoints[0].starts_with("https://"), "{endpoints:?}");
    let tls = |files: TlsFiles| ClusterTls::load(&files).expect("TLS files");
    let pylon = || tls(certs.files(&certs.pylon));
    let connect = |access: EtcdAccess| EtcdRegistry::connect(endpoints.clone(), access);

    // A user and password.
    let with_password = connect(EtcdAccess {
        tls: pylon(),
        user: Some((PYLON_USER.into(), PYLON_PASSWORD.into())),
    })
    .await
    .expect("connecting with a password");
    every_kind_of_request(&*with_password, "/pylon/by-password/").await;
    // Outside /pylon, pylon's role refuses: the registry counts as down (nothing works
    // until an operator fixes the role), at once, without trying other members.
    match with_password.put("/elsewhere", b"x".to_vec(), None).await {
        Err(RegistryError::Unavailable(message)) => {
            assert!(message.contains("permission denied"), "{message}")
        }
        other => panic!("expected a permission error, got {other:?}"),
    }

    // No password: etcd takes the user from the certificate's common name (pylon).
    let by_certificate = connect(EtcdAccess {
        tls: pylon(),
        user: None,
    })
    .await
    .expect("connecting by certificate");
    every_kind_of_request(&*by_certificate, "/pylon/by-certificate/").await;
    assert!(matches!(
        by_certificate.put("/elsewhere", b"x".to_vec(), None).await,
        Err(RegistryError::Unavailable(m)) if m.contains("permission denied")
    ));

    // A wrong password is refused at once.
    match connect(EtcdAccess {
        tls: pylon(),
        user: Some((PYLON_USER.into(), "not-the-password".into())),
    })
    .await
    {
        Err(RegistryError::Unavailable(message)) => {
            assert!(message.contains("authentication failed"), "{message}")
        }
        Err(e) => panic!("expected an authentication error, got {e}"),
        Ok(_) => panic!("a wrong password was accepted"),
    }

    // What must not get in: plaintext to the TLS port, a certificate of another CA (even
    // one naming root), and an etcd whose certificate our CA did not sign.
    let plain: Vec<String> = endpoints
        .iter()
        .map(|e| e.replace("https://", "http://"))
        .collect();
    assert!(EtcdRegistry::connect(plain, EtcdAccess::default())
        .await
        .is_err());
    let stranger = TlsFiles {
        ca: Some(certs.ca.clone()),
        cert: Some(certs.stranger.cert.clone()),
        key: Some(certs.stranger.key.clone()),
    };
    let refused = connect(EtcdAccess {
        tls: tls(stranger),
        user: None,
    })
    .await;
    assert!(
        matches!(&refused, Err(RegistryError::Unavailable(_))),
        "etcd took a certificate of another CA"
    );
    let wrong_ca = TlsFiles {
        ca: Some(certs.stranger_ca.clone()),
        ..certs.files(&certs.pylon)
    };
    let refused = connect(EtcdAccess {
        tls: tls(wrong_ca),
        user: None,
    })
    .await;
    match refused {
        Err(RegistryError::Unavailable(message)) => {
            assert!(message.contains("certificate"), "{message}")
        }
        Err(e) => panic!("expected an unknown-CA refusal, got {e}"),
        Ok(_) => panic!("an etcd of another CA was trusted"),
    }

    // The root view: the keys are where pylon wrote them.
    let mut root = cluster.root_client().await.expect("root client");
    let keys = root
        .get(
            "/pylon/",
            Some(
                etcd_client::GetOptions::new()
                    .with_prefix()
                    .with_keys_only(),
            ),
        )
        .await
        .expect("root reads");
    let names: Vec<&str> = keys
        .kvs()
        .iter()
        .filter_map(|kv| kv.key_str().ok())
        .collect();
    assert_eq!(
        names,
        ["/pylon/by-certificate/later", "/pylon/by-password/later"]
    );
}
