//! Settings files: TOML, read the same way by every process (flags then override what the
//! file says, in each process's `Cli::into_config`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// `--print-config` and `--check-config`, the same on every service.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ConfigArgs {
    /// Print the effective configuration (the file, then environment and flags over it)
    /// as TOML, secrets hidden, and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Check a configuration file, with the environment and flags over it as a real start
    /// would, and exit: 0 when it is valid, else 1 with the key (and line) at fault.
    #[arg(long, value_name = "FILE")]
    pub check_config: Option<PathBuf>,
}

impl ConfigArgs {
    /// The settings file to read: the one to check, else the one `--config` gave.
    pub fn config_file(&self, given: Option<PathBuf>) -> Option<PathBuf> {
        self.check_config.clone().or(given)
    }
}

/// What [`ConfigArgs`] asked for, once the configuration is built: `true` when the process
/// should exit now (it printed or checked the configuration).
pub fn handled<T: Serialize>(args: &ConfigArgs, config: &T) -> anyhow::Result<bool> {
    if args.print_config {
        print!("{}", to_toml_redacted(config)?);
        return Ok(true);
    }
    if let Some(file) = &args.check_config {
        println!("{}: valid", file.display());
        return Ok(true);
    }
    Ok(false)
}

/// Keys whose values are never printed.
const SECRET_KEYS: &[&str] = &[
    "admin_token",
    "cluster_token",
    "token",
    "password",
    "secret",
];

/// `config` as TOML, with tokens and passwords (also inside database URLs) hidden.
pub fn to_toml_redacted<T: Serialize>(config: &T) -> anyhow::Result<String> {
    let mut value = toml::Value::try_from(config).context("the configuration as TOML")?;
    redact(&mut value);
    toml::to_string_pretty(&value).context("the configuration as TOML")
}

const HIDDEN: &str = "<hidden>";

fn redact(value: &mut toml::Value) {
    match value {
        toml::Value::Table(table) => {
            for (key, value) in table.iter_mut() {
                match value {
                    toml::Value::String(s) if SECRET_KEYS.contains(&key.as_str()) => {
                        *s = HIDDEN.into()
                    }
                    toml::Value::String(s) => *s = hide_url_password(s),
                    other => redact(other),
                }
            }
        }
        toml::Value::Array(items) => {
            for item in items.iter_mut() {
                match item {
                    toml::Value::String(s) => *s = hide_url_password(s),
                    other => redact(other),
                }
            }
        }
        _ => {}
    }
}

/// `scheme://user:password@host/...` with the password hidden; a text that names a
/// password any other way (`?password=`, `password = '...'`) hidden whole.
fn hide_url_password(text: &str) -> String {
    if text.to_ascii_lowercase().contains("password") {
        return HIDDEN.into();
    }
    if let Some((scheme, rest)) = text.split_once("://") {
        if let Some((userinfo, host)) = rest.rsplit_once('@') {
            if let Some((user, _)) = userinfo.split_once(':') {
                return format!("{scheme}://{user}:{HIDDEN}@{host}");
            }
        }
    }
    text.to_owned()
}

/// Reads a TOML settings file; an error names the file, and toml's message the line and key.
pub fn from_toml_file<T: DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

/// The settings file when one is given, else the defaults.
pub fn file_or_default<T: DeserializeOwned + Default>(path: Option<&Path>) -> anyhow::Result<T> {
    match path {
        Some(path) => from_toml_file(path),
        None => Ok(T::default()),
    }
}

/// Flags over settings, the same way in every process: each flag given replaces its
/// setting.
///
/// ```text
/// pylon_service::overlay!(cli => config;
///     set: app_id => app_id, lease_ttl => control.lease_ttl_secs;   // Option<T> flag, T setting
///     some: admin_token => admin_token;                             // Option<T> flag and setting
///     lists: control => control;                                    // Vec<T>: replaced when given
/// );
/// ```
#[macro_export]
macro_rules! overlay {
    ($cli:ident => $config:ident;
     $(set: $($flag:ident => $($field:ident).+),* $(,)?;)?
     $(some: $($oflag:ident => $($ofield:ident).+),* $(,)?;)?
     $(lists: $($lflag:ident => $($lfield:ident).+),* $(,)?;)?
    ) => {{
        $($( if let Some(v) = $cli.$flag { $config.$($field).+ = v; } )*)?
        $($( if $cli.$oflag.is_some() { $config.$($ofield).+ = $cli.$oflag; } )*)?
        $($( if !$cli.$lflag.is_empty() { $config.$($lfield).+ = $cli.$lflag; } )*)?
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_configurations_hide_secrets() {
        #[derive(Serialize)]
        struct Store {
            url: String,
            path: String,
        }
        #[derive(Serialize)]
        struct Settings {
            admin_token: Option<String>,
            cluster_token: String,
            replica: String,
            store: Store,
            conninfo: String,
            urls: Vec<String>,
        }
        let text = to_toml_redacted(&Settings {
            admin_token: Some("boot-secret".into()),
            cluster_token: "cluster-secret".into(),
            replica: "c1".into(),
            store: Store {
                url: "postgres://pylon:db-secret@10.0.0.9/pylon".into(),
                path: "/var/lib/pylon/app.db".into(),
            },
            conninfo: "host=db user=pylon password = 'db secret'".into(),
            urls: vec![
                "postgres://pylon:p@ss-secret@db1/pylon".into(),
                "postgres://pylon@db2/pylon?password=query-secret".into(),
            ],
        })
        .expect("toml");
        for secret in [
            "boot-secret",
            "cluster-secret",
            "db-secret",
            "db secret",
            "ss-secret",
            "query-secret",
        ] {
            assert!(!text.contains(secret), "{text}");
        }
        assert!(text.contains("replica = \"c1\""), "{text}");
        assert!(
            text.contains("postgres://pylon:<hidden>@10.0.0.9/pylon"),
            "{text}"
        );
        assert!(text.contains("/var/lib/pylon/app.db"), "{text}");
    }

    #[derive(Debug, Default, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        #[allow(dead_code)]
        port: u16,
    }

    #[test]
    fn errors_name_the_file_and_the_line() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "port = 1\nprot = 2\n").expect("write");
        let e = format!("{:#}", from_toml_file::<Sample>(&path).unwrap_err());
        assert!(e.contains("bad.toml") && e.contains("line 2"), "{e}");
        assert!(from_toml_file::<Sample>(&dir.path().join("missing.toml")).is_err());
    }

    #[derive(Debug, Default, PartialEq)]
    struct Settings {
        name: String,
        token: Option<String>,
        peers: Vec<String>,
        inner: Inner,
    }

    #[derive(Debug, Default, PartialEq)]
    struct Inner {
        ttl: u32,
    }

    struct Flags {
        name: Option<String>,
        ttl: Option<u32>,
        token: Option<String>,
        peers: Vec<String>,
    }

    #[test]
    fn given_flags_replace_their_settings_and_absent_ones_leave_them() {
        let mut config = Settings {
            name: "file".into(),
            token: Some("from-file".into()),
            peers: vec!["a".into()],
            inner: Inner { ttl: 10 },
        };
        let cli = Flags {
            name: None,
            ttl: Some(4),
            token: None,
            peers: vec![],
        };
        crate::overlay!(cli => config;
            set: name => name, ttl => inner.ttl;
            some: token => token;
            lists: peers => peers;
        );
        assert_eq!(config.name, "file");
        assert_eq!(config.inner.ttl, 4);
        assert_eq!(config.token.as_deref(), Some("from-file"));
        assert_eq!(config.peers, ["a"]);
        let cli = Flags {
            name: Some("flag".into()),
            ttl: None,
            token: Some("t".into()),
            peers: vec!["b".into(), "c".into()],
        };
        crate::overlay!(cli => config;
            set: name => name, ttl => inner.ttl;
            some: token => token;
            lists: peers => peers;
        );
        assert_eq!(config.name, "flag");
        assert_eq!(config.inner.ttl, 4);
        assert_eq!(config.token.as_deref(), Some("t"));
        assert_eq!(config.peers, ["b", "c"]);
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ok.toml");
        std::fs::write(&path, "port = 7\n").expect("write");
        assert!(file_or_default::<Sample>(Some(&path)).is_ok());
        assert!(file_or_default::<Sample>(Some(&dir.path().join("none.toml"))).is_err());
    }
}
