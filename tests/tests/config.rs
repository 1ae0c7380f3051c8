//! `--print-config` and `--check-config` on every service, as an operator runs them.

use std::process::Command;

use pylon_tests::binary;

fn run(name: &str, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    pylon_tests::output(
        Command::new(binary(name))
            .args(args)
            .envs(env.iter().copied()),
    )
}

#[test]
fn every_service_prints_its_configuration_without_secrets() {
    let secrets = [
        ("PYLON_CLUSTER_TOKEN", "cluster-secret-1"),
        ("PYLON_ADMIN_TOKEN", "admin-secret-2"),
    ];
    for (name, extra) in [
        ("pylon-control", vec![]),
        ("pylon-app", vec!["--control", "http://127.0.0.1:7401"]),
        (
            "pylon-edge",
            vec![
                "--allow-all",
                "--control",
                "http://127.0.0.1:7401",
                "--advertise-tcp",
                "10.0.0.3:8768",
            ],
        ),
    ] {
        let mut args = vec!["--print-config"];
        args.extend(extra);
        let mut env = secrets.to_vec();
        // A store URL with its password (the app reads it; the others ignore it).
        env.push((
            "PYLON_POSTGRES_URL",
            "postgres://pylon:store-secret-3@db/pylon",
        ));
        let (ok, text) = run(name, &args, &env);
        assert!(ok, "{name}: {text}");
        for secret in ["cluster-secret-1", "admin-secret-2", "store-secret-3"] {
            assert!(!text.contains(secret), "{name}: {text}");
        }
        assert!(text.contains("<hidden>"), "{name}: {text}");
        // What it printed is a configuration file it takes back.
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("printed.toml");
        std::fs::write(&file, text.replace("\"<hidden>\"", "\"from-the-file\"")).expect("write");
        let (ok, checked) = run(
            name,
            &["--check-config", file.to_str().expect("utf-8")],
            &[],
        );
        assert!(ok, "{name} refused what it printed: {checked}");
        assert!(checked.contains("valid"), "{name}: {checked}");
    }
}

#[test]
fn a_bad_file_is_refused_with_its_key_and_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("control.toml");
    std::fs::write(
        &file,
        "replica_id = \"c1\"\ncluster_token = \"t\"\nshards = 64\n",
    )
    .expect("write");
    let (ok, text) = run(
        "pylon-control",
        &["--check-config", file.to_str().expect("utf-8")],
        &[],
    );
    assert!(!ok, "{text}");
    assert!(
        text.contains("line 3") && text.contains("shards") && text.contains("control.toml"),
        "{text}"
    );
    // A value no replica can run with is refused too.
    std::fs::write(&file, "cluster_token = \"t\"\nshard_count = 0\n").expect("write");
    let (ok, text) = run(
        "pylon-control",
        &["--check-config", file.to_str().expect("utf-8")],
        &[],
    );
    assert!(!ok && text.contains("shard_count"), "{text}");
}

#[test]
fn the_control_plane_reloads_on_sighup_and_keeps_running_on_a_bad_file() {
    use pylon_tests::control::{Backend, ControlOptions, ControlProcess};
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("control.toml");
    std::fs::write(&file, "log = \"info\"\nshard_count = 64\n").expect("write");
    let control = ControlProcess::start(ControlOptions {
        dir: dir.path(),
        replica: "c1",
        backend: Backend::Embedded(dir.path().join("registry.json")),
        extra: vec!["--config".into(), file.display().to_string()],
    });
    let reloads = |result: &str| {
        control.metric(
            "pylon_config_reloads_total",
            &[&format!("result=\"{result}\"")],
        )
    };
    // A live key and a key that needs a restart.
    std::fs::write(&file, "log = \"debug\"\nshard_count = 128\n").expect("write");
    control.signal(libc::SIGHUP);
    pylon_tests::wait_for("a reload", std::time::Duration::from_secs(10), || {
        (reloads("ok") == 1.0).then_some(())
    });
    let log = control.log_text();
    assert!(log.contains("configuration reloaded"), "{log}");
    assert!(log.contains("shard_count"), "{log}");
    // A bad file: refused with its line, and the service stays up.
    std::fs::write(&file, "log = \"debug\"\nshard_count = \"many\"\n").expect("write");
    control.signal(libc::SIGHUP);
    pylon_tests::wait_for(
        "a refused reload",
        std::time::Duration::from_secs(10),
        || (reloads("error") == 1.0).then_some(()),
    );
    let log = control.log_text();
    assert!(
        log.contains("not reloaded") && log.contains("line 2"),
        "{log}"
    );
    assert_eq!(pylon_tests::http::get(control.http, "/readyz").0, 200);
}

#[test]
fn the_balancer_checks_and_prints_its_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("balancer.toml");
    std::fs::write(
        &file,
        "vip = \"10.90.0.1\"\nport = 8768\ninterface = \"lo\"\ncontrol = [\"http://127.0.0.1:7401\"]\n\n[[edges]]\nedge_id = \"edge-1\"\ninterface = \"lo\"\nmac = \"02:00:0a:00:00:11\"\n",
    )
    .expect("write");
    let path = file.to_str().expect("utf-8");
    let (ok, text) = run("pylon-balancer", &["--check-config", path], &[]);
    assert!(ok && text.contains("valid"), "{text}");
    let (ok, text) = run("pylon-balancer", &["--config", path, "--print-config"], &[]);
    assert!(ok && text.contains("vip = \"10.90.0.1\""), "{text}");
    std::fs::write(&file, "vip = \"10.90.0.1\"\nport = \"high\"\n").expect("write");
    let (ok, text) = run("pylon-balancer", &["--check-config", path], &[]);
    assert!(
        !ok && text.contains("port") && text.contains("line 2"),
        "{text}"
    );
}
