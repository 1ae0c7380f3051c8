//! The Kubernetes manifests (`deploy/k8s`) against the binaries they start:
//! - each container's command runs with its arguments, its environment (field references
//!   given sample values, secrets the example's) and the settings files it mounts, and
//!   `--print-config` appended: every argument is accepted and the settings are valid;
//! - every probe asks a path the service declares public, on the port it listens on, and
//!   every container port is one the service listens on;
//! - every Service targets ports its workload's containers declare, and the kustomization
//!   lists files that exist.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use pylon_service::routes::{Access, Declared};
use pylon_tests::binary;
use serde_yaml_ng::Value;

fn k8s_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/k8s")
}

/// Every YAML document of every file in `deploy/k8s`, with its file name.
fn documents() -> Vec<(String, Value)> {
    let mut docs = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(k8s_dir())
        .expect("deploy/k8s")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("manifest");
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let value = <Value as serde::Deserialize>::deserialize(doc)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            if !value.is_null() {
                docs.push((name.clone(), value));
            }
        }
    }
    docs
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("expected a string, got {other:?}"),
    }
}

fn items<'a>(v: &'a Value, key: &str) -> Vec<&'a Value> {
    v.get(key)
        .and_then(Value::as_sequence)
        .map(|s| s.iter().collect())
        .unwrap_or_default()
}

/// Kubernetes' `$(VAR)` expansion in arguments; an unknown variable fails the test.
fn expand(arg: &str, env: &HashMap<String, String>, what: &str) -> String {
    let mut out = String::new();
    let mut rest = arg;
    while let Some(start) = rest.find("$(") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find(')')
            .unwrap_or_else(|| panic!("{what}: unclosed $( in {arg}"));
        let name = &rest[start + 2..start + end];
        let value = env
            .get(name)
            .unwrap_or_else(|| panic!("{what}: {arg} uses ${name}, which is not in env"));
        out.push_str(value);
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

/// Sample values for the downward API's fields.
fn field_value(path: &str) -> String {
    match path {
        "metadata.name" => "pylon-app-0".into(),
        "metadata.namespace" => "pylon".into(),
        "status.podIP" => "10.244.1.7".into(),
        "status.hostIP" => "10.0.0.21".into(),
        "spec.nodeName" => "node-1".into(),
        other => panic!("no sample value for fieldRef {other}"),
    }
}

/// The public GET routes of the service a binary runs.
fn public_paths(binary: &str) -> Vec<&'static str> {
    let declared: Vec<Declared> = match binary {
        "pylon-control" => pylon_control::http::routes().declared(),
        "pylon-app" => pylon_app::operator::routes().declared(),
        "pylon-edge" => pylon_edge::admin::routes().declared(),
        other => panic!("no route table for {other}"),
    };
    declared
        .into_iter()
        .filter(|d| d.method.as_str() == "GET" && matches!(d.access, Access::Public))
        .map(|d| d.path)
        .collect()
}

/// The ports of every `*_listen` address in a printed configuration, by key.
fn listen_ports(printed: &str) -> HashMap<String, u16> {
    let value: toml::Value = toml::from_str(printed).expect("printed configuration");
    let mut ports = HashMap::new();
    if let Some(table) = value.as_table() {
        for (key, v) in table {
            if let (true, Some(addr)) = (key.ends_with("_listen"), v.as_str()) {
                let port = addr
                    .rsplit_once(':')
                    .and_then(|(_, p)| p.parse().ok())
                    .unwrap_or_else(|| panic!("{key} = {addr}"));
                ports.insert(key.clone(), port);
            }
        }
    }
    ports
}

/// Files a Secret volume holds, made for the test (the etcd client's TLS).
fn secret_volume(secret: &str, dir: &Path) -> PathBuf {
    let path = dir.join(secret);
    std::fs::create_dir_all(&path).expect("secret dir");
    match secret {
        "pylon-etcd-tls" => {
            let ca = pylon_bench::certs::TestCa::new(&path, "etcd CA").expect("CA");
            let client = ca.issue("client-made", &["control"], None).expect("client");
            std::fs::copy(&ca.ca_pem, path.join("ca.pem")).expect("ca.pem");
            std::fs::copy(&client.cert, path.join("client.pem")).expect("client.pem");
            std::fs::copy(&client.key, path.join("client.key")).expect("client.key");
        }
        other => panic!("the test does not know what secret {other} holds"),
    }
    path
}

#[test]
fn the_manifests_start_their_binaries_with_valid_arguments_settings_and_probes() {
    let docs = documents();
    let dir = tempfile::tempdir().expect("temp dir");
    let kind = |d: &Value| d.get("kind").map(text).unwrap_or_default();
    let name = |d: &Value| {
        d["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };

    let mut config_maps: HashMap<String, HashMap<String, String>> = HashMap::new();
    let mut secrets: HashMap<String, HashMap<String, String>> = HashMap::new();
    for (_, d) in &docs {
        let data = |key: &str| -> HashMap<String, String> {
            d.get(key)
                .and_then(Value::as_mapping)
                .map(|m| m.iter().map(|(k, v)| (text(k), text(v))).collect())
                .unwrap_or_default()
        };
        match kind(d).as_str() {
            "ConfigMap" => {
                config_maps.insert(name(d), data("data"));
            }
            "Secret" => {
                secrets.insert(name(d), data("stringData"));
            }
            _ => {}
        }
    }

    let mut workloads = 0;
    let mut container_ports: HashMap<String, Vec<u16>> = HashMap::new();
    for (file, d) in &docs {
        if !["Deployment", "StatefulSet", "DaemonSet"].contains(&kind(d).as_str()) {
            continue;
        }
        workloads += 1;
        let workload = name(d);
        let labels = d["spec"]["template"]["metadata"]["labels"].clone();
        let pod = &d["spec"]["template"]["spec"];
        let volumes: HashMap<String, &Value> = items(pod, "volumes")
            .into_iter()
            .map(|v| (text(&v["name"]), v))
            .collect();
        for container in items(pod, "containers") {
            let what = format!("{file}: {workload}/{}", text(&container["name"]));
            let command: Vec<String> = items(container, "command").into_iter().map(text).collect();
            assert_eq!(command.len(), 1, "{what}: one binary as the command");
            let program = command[0].clone();

            let mut env = HashMap::new();
            for var in items(container, "env") {
                let key = text(&var["name"]);
                let value = if let Some(v) = var.get("value") {
                    text(v)
                } else if let Some(field) = var.get("valueFrom").and_then(|f| f.get("fieldRef")) {
                    field_value(&text(&field["fieldPath"]))
                } else if let Some(secret) =
                    var.get("valueFrom").and_then(|f| f.get("secretKeyRef"))
                {
                    let (secret, key) = (text(&secret["name"]), text(&secret["key"]));
                    secrets
                        .get(&secret)
                        .and_then(|s| s.get(&key))
                        .unwrap_or_else(|| {
                            panic!("{what}: secret {secret} has no {key} in the example")
                        })
                        .clone()
                } else {
                    panic!("{what}: env {key} has no value the test knows");
                };
                env.insert(key, value);
            }

            // Mounts, each at a path of the test's.
            let mut mounts: Vec<(String, PathBuf)> = Vec::new();
            for mount in items(container, "volumeMounts") {
                let mount_path = text(&mount["mountPath"]);
                let volume = volumes
                    .get(&text(&mount["name"]))
                    .unwrap_or_else(|| panic!("{what}: no volume {}", text(&mount["name"])));
                let local = if let Some(cm) = volume.get("configMap") {
                    let key = mount
                        .get("subPath")
                        .map(text)
                        .unwrap_or_else(|| panic!("{what}: mount a config map key by subPath"));
                    let content = config_maps
                        .get(&text(&cm["name"]))
                        .and_then(|c| c.get(&key))
                        .unwrap_or_else(|| panic!("{what}: config map has no {key}"));
                    let path = dir.path().join(format!("{workload}-{key}"));
                    std::fs::write(&path, content).expect("config");
                    path
                } else if let Some(secret) = volume.get("secret") {
                    secret_volume(&text(&secret["secretName"]), dir.path())
                } else {
                    panic!("{what}: a volume the test does not know");
                };
                mounts.push((mount_path, local));
            }
            // Longest mount paths first, so /etc/pylon/etcd wins over /etc/pylon.
            mounts.sort_by_key(|(m, _)| std::cmp::Reverse(m.len()));
            let relocate = |s: &str| {
                let mut s = s.to_owned();
                for (mount, local) in &mounts {
                    s = s.replace(mount, &local.display().to_string());
                }
                s
            };
            for (_, local) in &mounts {
                if local.is_file() {
                    let content = std::fs::read_to_string(local).expect("config");
                    std::fs::write(local, relocate(&content)).expect("config");
                }
            }

            let args: Vec<String> = items(container, "args")
                .into_iter()
                .map(|a| relocate(&expand(&text(a), &env, &what)))
                .collect();
            let out = Command::new(binary(&program))
                .args(&args)
                .arg("--print-config")
                .env_clear()
                .envs(&env)
                .output()
                .unwrap_or_else(|e| panic!("{what}: running {program}: {e}"));
            let printed = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                out.status.success(),
                "{what}: {program} {} refused: {}{}",
                args.join(" "),
                printed,
                String::from_utf8_lossy(&out.stderr)
            );
            for (key, value) in &env {
                if key.contains("TOKEN") || key.contains("POSTGRES") {
                    assert!(!printed.contains(value.as_str()), "{what}: {key} printed");
                }
            }

            let listening = listen_ports(&printed);
            let ports: Vec<u16> = items(container, "ports")
                .into_iter()
                .map(|p| p["containerPort"].as_u64().expect("containerPort") as u16)
                .collect();
            for port in &ports {
                assert!(
                    listening.values().any(|p| p == port),
                    "{what}: containerPort {port} is not one it listens on ({listening:?})"
                );
            }
            let paths = public_paths(&program);
            for probe in ["livenessProbe", "readinessProbe"] {
                let get = &container[probe]["httpGet"];
                assert!(!get.is_null(), "{what}: no {probe} httpGet");
                let path = text(&get["path"]);
                let port = get["port"].as_u64().expect("probe port") as u16;
                assert!(
                    paths.contains(&path.as_str()),
                    "{what}: {probe} asks {path}, which {program} does not serve publicly"
                );
                let http = listening
                    .get("http_listen")
                    .or_else(|| listening.get("admin_listen"))
                    .expect("an HTTP listener");
                assert_eq!(
                    port, *http,
                    "{what}: {probe} on a port it does not serve HTTP on"
                );
            }
            assert!(
                !container["resources"]["requests"].is_null(),
                "{what}: no resource requests"
            );
            container_ports
                .entry(
                    labels["app.kubernetes.io/name"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned(),
                )
                .or_default()
                .extend(ports);
        }
    }
    assert_eq!(workloads, 3, "control, app and edge");

    for (file, d) in &docs {
        if kind(d) != "Service" {
            continue;
        }
        let selected = d["spec"]["selector"]["app.kubernetes.io/name"]
            .as_str()
            .expect("selector");
        let ports = container_ports
            .get(selected)
            .unwrap_or_else(|| panic!("{file}: service selects {selected}, which no workload is"));
        for port in items(&d["spec"], "ports") {
            let target = port["targetPort"].as_u64().expect("targetPort") as u16;
            assert!(ports.contains(&target), "{file}: targetPort {target}");
        }
    }

    let kustomization =
        std::fs::read_to_string(k8s_dir().join("kustomization.yaml")).expect("kustomization.yaml");
    let kustomization: Value = serde_yaml_ng::from_str(&kustomization).expect("kustomization");
    for resource in items(&kustomization, "resources") {
        assert!(
            k8s_dir().join(text(resource)).exists(),
            "kustomization lists {}",
            text(resource)
        );
    }
}

/// The workloads the planner sizes carry the command that sized them; run it again and
/// the resources must be what it says today.
#[test]
fn the_workloads_resources_are_the_capacity_planners() {
    const KEY: &str = "pylon.io/resources-from";
    let mut checked = Vec::new();
    for (file, d) in documents() {
        let Some(command) = d["metadata"]["annotations"].get(KEY).map(text) else {
            continue;
        };
        let name = text(&d["metadata"]["name"]);
        let args: Vec<&str> = command.split_whitespace().collect();
        assert_eq!(
            args.get(..3),
            Some(&["pylonctl", "capacity", "plan"][..]),
            "{file}: {KEY} must be a `pylonctl capacity plan` command: {command}"
        );
        let (ok, printed) = pylon_tests::output(
            Command::new(binary("pylonctl"))
                .args(&args[1..])
                .args(["--output", "json"]),
        );
        assert!(ok, "{file}: {command}: {printed}");
        let plan: serde_json::Value = serde_json::from_str(&printed).expect("the plan as JSON");
        let pod = match name.as_str() {
            "pylon-edge" => &plan["pods"]["edge"],
            "pylon-app" => &plan["pods"]["app"],
            other => panic!("{file}: the planner sizes no workload named {other}"),
        };
        let container = &d["spec"]["template"]["spec"]["containers"][0];
        let resources = &container["resources"];
        let quantity = |v: &Value| v.as_str().map(str::to_owned).unwrap_or_else(|| text(v));
        let planned = [
            (
                "requests.cpu",
                &pod["cpu_request"],
                &resources["requests"]["cpu"],
            ),
            (
                "requests.memory",
                &pod["memory_request"],
                &resources["requests"]["memory"],
            ),
            (
                "limits.memory",
                &pod["memory_limit"],
                &resources["limits"]["memory"],
            ),
        ];
        for (what, wanted, written) in planned {
            if let Some(wanted) = wanted.as_str() {
                assert_eq!(
                    quantity(written),
                    wanted,
                    "{file}: {name}'s {what} is not what `{command}` plans now: update it"
                );
            }
        }
        if name == "pylon-app" {
            assert_eq!(
                d["spec"]["replicas"].as_u64(),
                plan["plan"]["app_instances_per_site"].as_u64(),
                "{file}: {name}'s replicas are not what `{command}` plans now: update them"
            );
        }
        checked.push(name);
    }
    checked.sort();
    assert_eq!(checked, ["pylon-app", "pylon-edge"], "annotated workloads");
}
