//! Settings files: TOML, read the same way by every process (flags then override what the
//! file says, in each process's `Cli::into_config`).

use std::path::Path;

use anyhow::Context;
use serde::de::DeserializeOwned;

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
