//! Live reload, the same way in every process: on SIGHUP the process reads its settings
//! file again (with its command-line flags over it, as at start), validates all of it,
//! and only then applies what can change without dropping a charger's session. A file
//! that does not load or validate changes nothing: the running configuration stays, and
//! the log says why (naming the key and line). Keys that changed but need a restart are
//! named in the log too.
//!
//! Every reload is counted in `pylon_config_reloads_total{result="ok"|"error"}`.

use std::collections::BTreeMap;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;
use signal_hook::consts::SIGHUP;

/// What one reload did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Settings applied (keys of the file, or what was read again, e.g. `allowlist`).
    pub applied: Vec<String>,
    /// Keys that changed in the file but take effect only at the next start.
    pub need_restart: Vec<String>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// The process's reload counters (one set per process, as there is one SIGHUP).
#[derive(Clone, Default)]
struct ReloadMetrics {
    reloads: Family<ResultLabel, Counter>,
    last_ok: Gauge,
}

fn metrics() -> &'static ReloadMetrics {
    static METRICS: std::sync::OnceLock<ReloadMetrics> = std::sync::OnceLock::new();
    METRICS.get_or_init(ReloadMetrics::default)
}

/// Registers the reload metrics with the process's other metrics.
pub fn register_metrics(registry: &mut Registry) {
    metrics().register(registry);
}

impl ReloadMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "pylon_config_reloads",
            "Configuration reloads (SIGHUP), by result",
            self.reloads.clone(),
        );
        registry.register(
            "pylon_config_last_reload_success_timestamp_seconds",
            "When the configuration last reloaded successfully (Unix time; 0: never)",
            self.last_ok.clone(),
        );
    }

    fn count(&self, result: &'static str) {
        self.reloads.get_or_create(&ResultLabel { result }).inc();
    }
}

/// Runs `reload` on every SIGHUP, on a thread of its own, and logs and counts what it
/// did. Registering also means SIGHUP no longer ends the process (its default action).
pub fn on_hangup(
    name: &'static str,
    mut reload: impl FnMut() -> anyhow::Result<Outcome> + Send + 'static,
) -> std::io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([SIGHUP])?;
    std::thread::Builder::new()
        .name("reload".into())
        .spawn(move || {
            let metrics = metrics();
            for _ in signals.forever() {
                match reload() {
                    Ok(outcome) => {
                        metrics.count("ok");
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map(|d| d.as_secs() as i64)
                            .unwrap_or_default();
                        metrics.last_ok.set(now);
                        tracing::info!(
                            applied = ?outcome.applied,
                            "{name}: configuration reloaded"
                        );
                        if !outcome.need_restart.is_empty() {
                            tracing::warn!(
                                keys = ?outcome.need_restart,
                                "{name}: these settings changed but take effect only after \
                                 a restart"
                            );
                        }
                    }
                    Err(e) => {
                        metrics.count("error");
                        tracing::error!(
                            "{name}: configuration not reloaded, the running one stays: {e:#}"
                        );
                    }
                }
            }
        })?;
    Ok(())
}

/// The usual reload: on SIGHUP, `read` the settings again as at start (file, then flags
/// over it, validated), then `apply` their live part (it returns notes for the log, e.g.
/// files it read again). Keys under `live` that changed since the last reload are
/// reported applied; other keys that differ from the configuration the process started
/// with are reported at every reload until a restart. Nothing is applied when `read`
/// fails, and `apply` must check everything before it changes anything.
pub fn reread_on_hangup<C: Serialize + Send + 'static>(
    name: &'static str,
    started: C,
    live: &'static [&'static str],
    mut read: impl FnMut() -> anyhow::Result<C> + Send + 'static,
    mut apply: impl FnMut(&C) -> anyhow::Result<Vec<String>> + Send + 'static,
) -> std::io::Result<()> {
    let mut last: Option<C> = None;
    on_hangup(name, move || {
        let config = read()?;
        let notes = apply(&config)?;
        let since_last = last.as_ref().unwrap_or(&started);
        let mut applied = split_changes(changed_keys(since_last, &config), live).applied;
        applied.extend(notes);
        let need_restart = split_changes(changed_keys(&started, &config), live).need_restart;
        last = Some(config);
        Ok(Outcome {
            applied,
            need_restart,
        })
    })
}

/// For services whose only live setting is the log filter (the control plane, the app
/// service; their cluster certificates reload by themselves, see [`crate::tls`]): applies
/// the started configuration's filter now, and a reread one on every SIGHUP.
pub fn log_filter_on_hangup<C: Serialize + Send + 'static>(
    name: &'static str,
    started: C,
    log: fn(&C) -> Option<&str>,
    read: impl FnMut() -> anyhow::Result<C> + Send + 'static,
) -> anyhow::Result<()> {
    crate::logging::use_file_filter(log(&started))?;
    reread_on_hangup(name, started, &["log"], read, move |config| {
        apply_log_filter(log(config))
    })?;
    Ok(())
}

/// Applies only the log filter (`logging::use_file_filter`): the live part of services
/// that have no other.
pub fn apply_log_filter(filter: Option<&str>) -> anyhow::Result<Vec<String>> {
    Ok(if crate::logging::use_file_filter(filter)? {
        vec!["log filter".into()]
    } else {
        Vec::new()
    })
}

/// The dotted keys whose values differ between two configurations (`limits.login_timeout_secs`,
/// `tls.certs`, ...): leaves of their TOML forms, arrays compared whole.
pub fn changed_keys<T: Serialize>(old: &T, new: &T) -> Vec<String> {
    let (Ok(old), Ok(new)) = (toml::Value::try_from(old), toml::Value::try_from(new)) else {
        return Vec::new();
    };
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    flatten("", &old, &mut a);
    flatten("", &new, &mut b);
    let mut keys: Vec<String> = a
        .keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

fn flatten(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, toml::Value>) {
    match value {
        toml::Value::Table(table) => {
            for (key, value) in table {
                let key = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&key, value, out);
            }
        }
        other => {
            out.insert(prefix.to_owned(), other.clone());
        }
    }
}

/// Splits changed keys into those a reload applies (each is one of `live`, or inside a
/// section named there) and those that need a restart.
pub fn split_changes(changed: Vec<String>, live: &[&str]) -> Outcome {
    let (applied, need_restart) = changed.into_iter().partition(|key| {
        live.iter()
            .any(|l| key == l || key.starts_with(&format!("{l}.")))
    });
    Outcome {
        applied,
        need_restart,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Limits {
        login: u64,
        burst: u32,
    }

    #[derive(Serialize)]
    struct Settings {
        id: String,
        log: Option<String>,
        files: Vec<String>,
        limits: Limits,
    }

    fn settings(id: &str, login: u64, files: &[&str], log: Option<&str>) -> Settings {
        Settings {
            id: id.into(),
            log: log.map(str::to_owned),
            files: files.iter().map(|f| f.to_string()).collect(),
            limits: Limits { login, burst: 5 },
        }
    }

    #[test]
    fn nothing_changed_is_no_key() {
        let a = settings("e1", 30, &["a"], None);
        assert!(changed_keys(&a, &settings("e1", 30, &["a"], None)).is_empty());
    }

    #[test]
    fn changed_leaves_are_named_by_their_dotted_keys() {
        let a = settings("e1", 30, &["a"], None);
        let b = settings("e2", 10, &["a", "b"], Some("debug"));
        assert_eq!(changed_keys(&a, &b), ["files", "id", "limits.login", "log"]);
    }

    #[test]
    fn live_keys_and_sections_are_applied_the_rest_waits_for_a_restart() {
        let changed = vec![
            "id".to_owned(),
            "limits.login".to_owned(),
            "log".to_owned(),
            "logins".to_owned(),
        ];
        let outcome = split_changes(changed, &["limits", "log"]);
        assert_eq!(outcome.applied, ["limits.login", "log"]);
        assert_eq!(outcome.need_restart, ["id", "logins"]);
    }
}
