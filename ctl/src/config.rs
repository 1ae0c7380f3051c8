//! Where `pylonctl` finds the control plane, the app service, the edge's admin API, the
//! admin token, the cluster CA (for https:// endpoints) and the client certificate (for
//! mutual TLS: `routes watch` with cluster TLS).
//!
//! Every setting is taken from, in this order: its flag, its environment variable, the
//! config file, the default. The environment is read through a lookup function so that
//! resolution is a pure function of its inputs (and testable without touching the
//! process environment).

use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cli::Failure;
use pylon_proto::api::control::DEFAULT_HTTP_PORT;

pub const ENV_ENDPOINT: &str = "PYLON_ENDPOINT";
pub const ENV_TOKEN: &str = "PYLON_TOKEN";
pub const ENV_CONFIG: &str = "PYLONCTL_CONFIG";
pub const ENV_GRPC_ENDPOINT: &str = "PYLON_GRPC_ENDPOINT";
pub const ENV_APP_ENDPOINT: &str = "PYLON_APP_ENDPOINT";
pub const ENV_EDGE_ADMIN: &str = "PYLON_EDGE_ADMIN";
pub const ENV_CA: &str = "PYLON_CA";
pub const ENV_CERT: &str = "PYLON_CERT";
pub const ENV_KEY: &str = "PYLON_KEY";

/// The app service's HTTP port (operator API) when nothing else names one: `pylon-app`'s
/// default.
pub const DEFAULT_APP_HTTP_PORT: u16 = pylon_proto::api::app::DEFAULT_HTTP_PORT;

/// The edge's admin HTTP port when nothing else names one: `pylon-edge`'s default
/// `--admin-listen` (127.0.0.1:9100).
pub const DEFAULT_EDGE_ADMIN_PORT: u16 = pylon_proto::api::edge::DEFAULT_ADMIN_PORT;

/// The config file's place under the user's config folder.
pub const CONFIG_RELATIVE: &str = "pylon/pylonctl.toml";

/// The control plane's HTTP address when nothing else names one.
pub fn default_endpoint() -> String {
    format!("http://127.0.0.1:{DEFAULT_HTTP_PORT}")
}

/// The app service's HTTP address when nothing else names one.
pub fn default_app_endpoint() -> String {
    format!("http://127.0.0.1:{DEFAULT_APP_HTTP_PORT}")
}

/// The edge's admin HTTP address when nothing else names one.
pub fn default_edge_admin() -> String {
    format!("http://127.0.0.1:{DEFAULT_EDGE_ADMIN_PORT}")
}

/// Which server a command talks to: its address must be valid, the other's need not be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Target {
    /// The control plane (`--endpoint`).
    #[default]
    ControlPlane,
    /// The app service's operator API (`--app-endpoint`).
    App,
    /// An edge's admin API (`--edge-admin`).
    EdgeAdmin,
}

/// The settings given as flags (`None`: not given).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    pub endpoint: Option<String>,
    pub token: Option<String>,
    pub config: Option<PathBuf>,
    pub grpc_endpoint: Option<String>,
    pub app_endpoint: Option<String>,
    pub edge_admin: Option<String>,
    /// The cluster CA's certificate (PEM), to check https:// servers against.
    pub ca: Option<PathBuf>,
    /// A client certificate (PEM chain) issued by the cluster CA, and its key: both or
    /// neither.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The server the command talks to.
    pub target: Target,
}

/// The config file, `pylonctl.toml`. Unknown keys are refused so that a misspelt key is
/// reported rather than silently ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub endpoint: Option<String>,
    pub token: Option<String>,
    pub grpc_endpoint: Option<String>,
    pub app_endpoint: Option<String>,
    pub edge_admin: Option<String>,
    /// A relative path is taken from the config file's folder.
    pub ca: Option<PathBuf>,
    /// The client certificate and its key; relative paths as for `ca`.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// The settings a command runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The control plane's base URL, `http://host:port` or `https://host:port`, without a
    /// trailing slash.
    pub endpoint: String,
    pub token: Option<String>,
    /// The gRPC address as given (flag, env or file); `None`: ask the control plane.
    pub grpc_endpoint: Option<String>,
    /// The app service's base URL, `http://host:port` or `https://host:port`, without a
    /// trailing slash. Only checked when [`Flags::target`] is [`Target::App`]; otherwise
    /// as given.
    pub app_endpoint: String,
    /// The edge's admin base URL, `http://host:port` or `https://host:port`, without a
    /// trailing slash. Only checked when [`Flags::target`] is [`Target::EdgeAdmin`];
    /// otherwise as given.
    pub edge_admin: String,
    /// The cluster CA's certificate file, to check https:// servers against. Required
    /// (by [`resolve`]) when the command's address is https.
    pub ca: Option<PathBuf>,
    /// The client certificate to show servers (`--cert` and `--key`): needed by the
    /// control plane's gRPC port with cluster TLS (mutual TLS); optional over HTTPS.
    pub client_cert: Option<crate::tls::ClientCert>,
    /// The config file consulted (it may not exist), for hints in error messages.
    pub config_path: Option<PathBuf>,
}

impl Settings {
    /// Where to put the token, said in terms of this user's config file.
    pub fn token_hint(&self) -> String {
        let file = self.config_path.as_ref().map_or_else(
            || "~/.config/pylon/pylonctl.toml".to_owned(),
            |p| p.display().to_string(),
        );
        format!("pass --token, set {ENV_TOKEN}, or put token = \"...\" in {file}")
    }

    /// Where to give the cluster CA, said in terms of this user's config file.
    pub fn ca_hint(&self) -> String {
        crate::tls::ca_hint(self.config_path.as_deref())
    }

    /// Where to give the client certificate, said in terms of this user's config file.
    pub fn cert_hint(&self) -> String {
        crate::tls::cert_hint(self.config_path.as_deref())
    }

    /// What a client of `url` trusts: the cluster CA for an https URL (which [`resolve`]
    /// made sure is given for the command's address), with the client certificate when
    /// one is given; nothing for plain http.
    pub fn trust_for(&self, url: &str) -> Result<Option<crate::tls::Trust>, Failure> {
        if !is_https(url) {
            return Ok(None);
        }
        match &self.ca {
            Some(ca) => crate::tls::trust_with(ca, self.client_cert.as_ref()).map(Some),
            None => Err(Failure::BadInput(format!(
                "{url} is https: pylonctl needs the cluster CA to check the server's \
                 certificate; {}",
                self.ca_hint()
            ))),
        }
    }
}

/// Whether a (normalised) URL is https.
pub fn is_https(url: &str) -> bool {
    url.trim()
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
}

/// The default config file: `$XDG_CONFIG_HOME/pylon/pylonctl.toml`, else
/// `$HOME/.config/pylon/pylonctl.toml`; `None` when neither variable is set.
pub fn default_config_path(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let nonempty = |k: &str| env(k).filter(|v| !v.is_empty());
    if let Some(xdg) = nonempty("XDG_CONFIG_HOME").filter(|v| Path::new(v).is_absolute()) {
        return Some(Path::new(&xdg).join(CONFIG_RELATIVE));
    }
    nonempty("HOME").map(|home| Path::new(&home).join(".config").join(CONFIG_RELATIVE))
}

/// Reads and parses a config file. `explicit`: the user named it, so it must exist.
pub fn load_config(path: &Path, explicit: bool) -> Result<ConfigFile, Failure> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound && !explicit => {
            return Ok(ConfigFile::default())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Failure::BadInput(format!(
                "the config file {} does not exist (named by --config or {ENV_CONFIG})",
                path.display()
            )))
        }
        Err(e) => {
            return Err(Failure::Other(anyhow::anyhow!(
                "cannot read the config file {}: {e}",
                path.display()
            )))
        }
    };
    toml::from_str(&text).map_err(|e| {
        Failure::BadInput(format!(
            "the config file {} is not valid: {}\nIt takes the keys endpoint, token, \
             grpc_endpoint, app_endpoint, edge_admin, ca, cert and key, e.g. endpoint = \
             \"http://10.0.0.5:7400\".",
            path.display(),
            e.to_string().trim_end()
        ))
    })
}

/// Resolves every setting: flag > environment > config file > default.
pub fn resolve(flags: &Flags, env: &dyn Fn(&str) -> Option<String>) -> Result<Settings, Failure> {
    let nonempty = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
    let env_var = |k: &str| nonempty(env(k));

    let (config_path, explicit) = match (&flags.config, env_var(ENV_CONFIG)) {
        (Some(path), _) => (Some(path.clone()), true),
        (None, Some(path)) => (Some(PathBuf::from(path)), true),
        (None, None) => (default_config_path(env), false),
    };
    let file = match &config_path {
        Some(path) => load_config(path, explicit)?,
        None => ConfigFile::default(),
    };

    let endpoint = nonempty(flags.endpoint.clone())
        .or_else(|| env_var(ENV_ENDPOINT))
        .or(nonempty(file.endpoint))
        .unwrap_or_else(default_endpoint);
    let token = nonempty(flags.token.clone())
        .or_else(|| env_var(ENV_TOKEN))
        .or(nonempty(file.token))
        .map(|t| t.trim().to_owned());
    let grpc_endpoint = nonempty(flags.grpc_endpoint.clone())
        .or_else(|| env_var(ENV_GRPC_ENDPOINT))
        .or(nonempty(file.grpc_endpoint));
    // Without an app address of its own, the app's API is reached through the control
    // plane, which forwards each call to the instance that can answer it.
    let (app_endpoint, normalize_app): (String, Normalize) =
        match nonempty(flags.app_endpoint.clone())
            .or_else(|| env_var(ENV_APP_ENDPOINT))
            .or(nonempty(file.app_endpoint))
        {
            Some(given) => (given, normalize_app_endpoint),
            None => (endpoint.clone(), normalize_http_endpoint),
        };
    let edge_admin = nonempty(flags.edge_admin.clone())
        .or_else(|| env_var(ENV_EDGE_ADMIN))
        .or(nonempty(file.edge_admin))
        .unwrap_or_else(default_edge_admin);
    // A file: flag > environment > config file (relative there: from the file's folder).
    let config_dir = config_path.as_deref().and_then(Path::parent);
    let file_setting = |flag: &Option<PathBuf>, var: &str, in_file: Option<PathBuf>| {
        flag.clone()
            .filter(|p| !p.as_os_str().is_empty())
            .or_else(|| env_var(var).map(PathBuf::from))
            .or_else(|| {
                in_file
                    .filter(|p| !p.as_os_str().is_empty())
                    .map(|p| match config_dir {
                        Some(dir) if p.is_relative() => dir.join(p),
                        _ => p,
                    })
            })
    };
    let ca = file_setting(&flags.ca, ENV_CA, file.ca);
    let ca_hint = crate::tls::ca_hint(config_path.as_deref());
    let client_cert = match (
        file_setting(&flags.cert, ENV_CERT, file.cert),
        file_setting(&flags.key, ENV_KEY, file.key),
    ) {
        (Some(cert), Some(key)) => Some(crate::tls::ClientCert { cert, key }),
        (None, None) => None,
        (Some(cert), None) => {
            return Err(Failure::BadInput(format!(
                "a client certificate is given ({}, by --cert / {ENV_CERT} / cert in the \
                 config file) without its key: give both or neither; {}",
                cert.display(),
                crate::tls::cert_hint(config_path.as_deref())
            )))
        }
        (None, Some(key)) => {
            return Err(Failure::BadInput(format!(
                "a client key is given ({}, by --key / {ENV_KEY} / key in the config file) \
                 without its certificate: give both or neither; {}",
                key.display(),
                crate::tls::cert_hint(config_path.as_deref())
            )))
        }
    };

    // Only the address the command uses must be valid: a stray PYLON_APP_ENDPOINT does
    // not break `pylonctl edges list`, nor a stray PYLON_ENDPOINT `pylonctl piles list`.
    // An https address of the command needs the cluster CA to check the server against.
    let check = |target: Target,
                 value: String,
                 normalize: fn(&str) -> Result<String, Failure>|
     -> Result<String, Failure> {
        if flags.target != target {
            return Ok(normalize(&value).unwrap_or(value));
        }
        let url = normalize(&value)?;
        if is_https(&url) && ca.is_none() {
            let (flag, var, server) = match target {
                Target::ControlPlane => ("--endpoint", ENV_ENDPOINT, "the control plane"),
                Target::App => ("--app-endpoint", ENV_APP_ENDPOINT, "the app service"),
                Target::EdgeAdmin => ("--edge-admin", ENV_EDGE_ADMIN, "the edge"),
            };
            return Err(Failure::BadInput(format!(
                "{flag} / {var}: the endpoint {url} is https, and pylonctl checks {server}'s \
                 certificate against the cluster CA, which is not given: {ca_hint}"
            )));
        }
        Ok(url)
    };
    Ok(Settings {
        endpoint: check(Target::ControlPlane, endpoint, normalize_http_endpoint)?,
        token,
        grpc_endpoint,
        app_endpoint: check(Target::App, app_endpoint, normalize_app)?,
        edge_admin: check(Target::EdgeAdmin, edge_admin, normalize_edge_admin)?,
        ca,
        client_cert,
        config_path,
    })
}

/// Makes a URL of an address as given, or says what is wrong with it.
type Normalize = fn(&str) -> Result<String, Failure>;

/// `host:port` or `http://host:port/` -> `http://host:port`; `https://host:port/` ->
/// `https://host:port`; refuses other schemes.
pub fn normalize_http_endpoint(endpoint: &str) -> Result<String, Failure> {
    normalize_url(endpoint, "the control plane", &default_endpoint(), true)
}

/// [`normalize_http_endpoint`] for `--app-endpoint`, with messages naming the app service.
pub fn normalize_app_endpoint(endpoint: &str) -> Result<String, Failure> {
    normalize_url(endpoint, "the app service", &default_app_endpoint(), true)
        .map_err(|e| Failure::BadInput(format!("--app-endpoint / {ENV_APP_ENDPOINT}: {e}")))
}

/// [`normalize_http_endpoint`] for `--edge-admin`, with messages naming the edge.
pub fn normalize_edge_admin(endpoint: &str) -> Result<String, Failure> {
    normalize_url(
        endpoint,
        "the edge's admin API",
        &default_edge_admin(),
        true,
    )
    .map_err(|e| Failure::BadInput(format!("--edge-admin / {ENV_EDGE_ADMIN}: {e}")))
}

/// `server`: who is reached there, for messages; `example`: a valid URL to suggest;
/// `https`: whether https:// is accepted.
fn normalize_url(
    endpoint: &str,
    server: &str,
    example: &str,
    https: bool,
) -> Result<String, Failure> {
    let endpoint = endpoint.trim();
    let (scheme, rest) = endpoint.split_once("://").unwrap_or(("http", endpoint));
    let scheme = scheme.to_ascii_lowercase();
    let accepted = if https {
        "an http:// or https://"
    } else {
        "an http://"
    };
    match scheme.as_str() {
        "http" => {}
        "https" if https => {}
        "https" => {
            return Err(Failure::BadInput(format!(
                "the endpoint {endpoint} is https, but pylonctl speaks plain http to \
                 {server}: give an http:// URL"
            )))
        }
        _ => {
            return Err(Failure::BadInput(format!(
                "the endpoint {endpoint} has the scheme {scheme}: give {accepted} URL such \
                 as {example}"
            )))
        }
    }
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() {
        return Err(Failure::BadInput(format!(
            "the endpoint {endpoint:?} names no host: give {accepted} URL such as {example}"
        )));
    }
    Ok(format!("{scheme}://{rest}"))
}

/// The host part of an `http://host:port/...` URL (`[::1]` keeps its brackets).
pub fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let host = if authority.starts_with('[') {
        &authority[..=authority.find(']')?]
    } else {
        authority.split(':').next()?
    };
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn write_config(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join(CONFIG_RELATIVE);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn flag_beats_env_beats_file_beats_default() {
        let dir = tempfile::tempdir().unwrap();
        let xdg = dir.path().to_str().unwrap();
        write_config(
            dir.path(),
            "endpoint = \"http://file:7400\"\ntoken = \"file-token\"\ngrpc_endpoint = \"http://file:7401\"\n\
             app_endpoint = \"file:7510\"\nedge_admin = \"file:9100\"\n",
        );

        // Nothing but the default file.
        let env = env_of(&[("XDG_CONFIG_HOME", xdg)]);
        let s = resolve(&Flags::default(), &env).unwrap();
        assert_eq!(s.endpoint, "http://file:7400");
        assert_eq!(s.token.as_deref(), Some("file-token"));
        assert_eq!(s.grpc_endpoint.as_deref(), Some("http://file:7401"));
        assert_eq!(s.app_endpoint, "http://file:7510");
        assert_eq!(s.edge_admin, "http://file:9100");
        assert_eq!(s.config_path, Some(dir.path().join(CONFIG_RELATIVE)));

        // The environment beats the file.
        let env = env_of(&[
            ("XDG_CONFIG_HOME", xdg),
            (ENV_ENDPOINT, "http://env:7400"),
            (ENV_TOKEN, "env-token"),
            (ENV_GRPC_ENDPOINT, "http://env:7401"),
            (ENV_APP_ENDPOINT, "http://env:7510/"),
            (ENV_EDGE_ADMIN, "http://env:9100/"),
        ]);
        let s = resolve(&Flags::default(), &env).unwrap();
        assert_eq!(s.endpoint, "http://env:7400");
        assert_eq!(s.token.as_deref(), Some("env-token"));
        assert_eq!(s.grpc_endpoint.as_deref(), Some("http://env:7401"));
        assert_eq!(s.app_endpoint, "http://env:7510");
        assert_eq!(s.edge_admin, "http://env:9100");

        // Flags beat the environment.
        let flags = Flags {
            endpoint: Some("flag:7400".into()),
            token: Some("flag-token".into()),
            config: None,
            grpc_endpoint: Some("http://flag:7401".into()),
            app_endpoint: Some("flag:7510".into()),
            edge_admin: Some("flag:9100".into()),
            ca: None,
            cert: None,
            key: None,
            target: Target::App,
        };
        let s = resolve(&flags, &env).unwrap();
        assert_eq!(s.endpoint, "http://flag:7400");
        assert_eq!(s.token.as_deref(), Some("flag-token"));
        assert_eq!(s.grpc_endpoint.as_deref(), Some("http://flag:7401"));
        assert_eq!(s.app_endpoint, "http://flag:7510");
        assert_eq!(s.edge_admin, "http://flag:9100");

        // No file, no env, no flags: the defaults.
        let empty = tempfile::tempdir().unwrap();
        let env = env_of(&[("HOME", empty.path().to_str().unwrap())]);
        let s = resolve(&Flags::default(), &env).unwrap();
        assert_eq!(s.endpoint, "http://127.0.0.1:7400");
        assert_eq!(s.token, None);
        assert_eq!(s.grpc_endpoint, None);
        // The app's API through the control plane.
        assert_eq!(s.app_endpoint, "http://127.0.0.1:7400");
        assert_eq!(s.edge_admin, "http://127.0.0.1:9100");
        assert_eq!(
            s.config_path,
            Some(empty.path().join(".config").join(CONFIG_RELATIVE))
        );
    }

    #[test]
    fn only_the_targeted_endpoint_must_be_valid() {
        let env = env_of(&[
            (ENV_ENDPOINT, "ftp://ctl"),
            (ENV_APP_ENDPOINT, "https://app"),
        ]);
        let control = Flags::default();
        let app = Flags {
            target: Target::App,
            ..Flags::default()
        };
        let err = resolve(&control, &env).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("ftp://ctl"), "{err}");
        let err = resolve(&app, &env).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let msg = err.to_string();
        assert!(
            msg.starts_with("--app-endpoint / PYLON_APP_ENDPOINT: the endpoint https://app")
                && msg.contains("the app service"),
            "{msg}"
        );

        // Without an app address, the app commands go through the control plane's.
        let env = env_of(&[(ENV_ENDPOINT, "ftp://ctl")]);
        let err = resolve(&app, &env).unwrap_err();
        assert!(err.to_string().contains("ftp://ctl"), "{err}");
        let env = env_of(&[(ENV_ENDPOINT, "http://ctl:7400")]);
        assert_eq!(resolve(&app, &env).unwrap().app_endpoint, "http://ctl:7400");
        let env = env_of(&[(ENV_APP_ENDPOINT, "https://app")]);
        assert_eq!(
            resolve(&control, &env).unwrap().endpoint,
            default_endpoint()
        );

        // The edge's admin address is checked only for the guard commands.
        let edge = Flags {
            target: Target::EdgeAdmin,
            ..Flags::default()
        };
        let env = env_of(&[(ENV_ENDPOINT, "ftp://ctl"), (ENV_EDGE_ADMIN, "ftp://edge")]);
        let err = resolve(&edge, &env).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let msg = err.to_string();
        assert!(
            msg.starts_with("--edge-admin / PYLON_EDGE_ADMIN: the endpoint ftp://edge")
                && msg.contains("http://127.0.0.1:9100"),
            "{msg}"
        );
        // The app commands use the control plane's address when given none of their own.
        assert!(resolve(&app, &env).is_err());
        let with_app = env_of(&[
            (ENV_ENDPOINT, "ftp://ctl"),
            (ENV_EDGE_ADMIN, "ftp://edge"),
            (ENV_APP_ENDPOINT, "http://app:7510"),
        ]);
        assert!(resolve(&app, &with_app).is_ok());
        let env = env_of(&[
            (ENV_ENDPOINT, "ftp://ctl"),
            (ENV_EDGE_ADMIN, "10.0.0.3:9100"),
        ]);
        assert_eq!(
            resolve(&edge, &env).unwrap().edge_admin,
            "http://10.0.0.3:9100"
        );
    }

    #[test]
    fn empty_values_count_as_unset() {
        let dir = tempfile::tempdir().unwrap();
        write_config(dir.path(), "token = \"file-token\"\n");
        let env = env_of(&[
            ("XDG_CONFIG_HOME", dir.path().to_str().unwrap()),
            (ENV_TOKEN, ""),
            (ENV_ENDPOINT, "  "),
        ]);
        let s = resolve(&Flags::default(), &env).unwrap();
        assert_eq!(s.token.as_deref(), Some("file-token"));
        assert_eq!(s.endpoint, default_endpoint());
    }

    #[test]
    fn an_explicit_config_file_must_exist_the_default_need_not() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.toml");
        let flags = Flags {
            config: Some(missing.clone()),
            ..Flags::default()
        };
        let err = resolve(&flags, &env_of(&[])).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("does not exist"), "{err}");

        let env = env_of(&[(ENV_CONFIG, missing.to_str().unwrap())]);
        assert!(resolve(&Flags::default(), &env).is_err());

        let env = env_of(&[("XDG_CONFIG_HOME", dir.path().to_str().unwrap())]);
        assert!(resolve(&Flags::default(), &env).is_ok());
    }

    #[test]
    fn the_config_flag_beats_the_config_env_var() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.toml");
        let b = dir.path().join("b.toml");
        std::fs::write(&a, "endpoint = \"http://a:1\"").unwrap();
        std::fs::write(&b, "endpoint = \"http://b:1\"").unwrap();
        let env = env_of(&[(ENV_CONFIG, b.to_str().unwrap())]);
        let flags = Flags {
            config: Some(a.clone()),
            ..Flags::default()
        };
        assert_eq!(resolve(&flags, &env).unwrap().endpoint, "http://a:1");
        assert_eq!(
            resolve(&Flags::default(), &env).unwrap().endpoint,
            "http://b:1"
        );
    }

    #[test]
    fn a_bad_config_file_is_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "tokne = \"x\"\n").unwrap();
        let err = load_config(&path, true).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let msg = err.to_string();
        assert!(
            msg.contains("tokne") && msg.contains("app_endpoint") && msg.contains("edge_admin"),
            "{msg}"
        );
    }

    #[test]
    fn default_config_path_prefers_xdg() {
        let env = env_of(&[("XDG_CONFIG_HOME", "/x"), ("HOME", "/home/op")]);
        assert_eq!(
            default_config_path(&env),
            Some(PathBuf::from("/x/pylon/pylonctl.toml"))
        );
        let env = env_of(&[("XDG_CONFIG_HOME", "relative"), ("HOME", "/home/op")]);
        assert_eq!(
            default_config_path(&env),
            Some(PathBuf::from("/home/op/.config/pylon/pylonctl.toml"))
        );
        assert_eq!(default_config_path(&env_of(&[])), None);
    }

    #[test]
    fn endpoints_are_normalised() {
        assert_eq!(
            normalize_http_endpoint("10.0.0.5:7400").unwrap(),
            "http://10.0.0.5:7400"
        );
        assert_eq!(
            normalize_http_endpoint("http://h:1/").unwrap(),
            "http://h:1"
        );
        assert_eq!(
            normalize_http_endpoint("HTTPS://h:7400/").unwrap(),
            "https://h:7400"
        );
        assert_eq!(
            normalize_app_endpoint("https://[::1]:7510").unwrap(),
            "https://[::1]:7510"
        );
        assert_eq!(
            normalize_edge_admin("https://10.0.0.3:9100/").unwrap(),
            "https://10.0.0.3:9100"
        );
        assert!(normalize_http_endpoint("ftp://h").is_err());
        assert!(normalize_http_endpoint("http://").is_err());
    }

    #[test]
    fn https_needs_the_cluster_ca() {
        let dir = tempfile::tempdir().unwrap();
        let xdg = dir.path().to_str().unwrap();
        let control = Flags::default();
        let app = Flags {
            target: Target::App,
            ..Flags::default()
        };

        // No CA anywhere: refused, saying how to give one.
        let env = env_of(&[
            ("XDG_CONFIG_HOME", xdg),
            (ENV_ENDPOINT, "https://10.0.0.5:7400"),
            (ENV_APP_ENDPOINT, "https://10.0.0.7:7510"),
        ]);
        for flags in [&control, &app] {
            let err = resolve(flags, &env).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            let msg = err.to_string();
            assert!(
                msg.contains("is https")
                    && msg.contains("--ca FILE")
                    && msg.contains(ENV_CA)
                    && msg.contains("ca = ")
                    && msg.contains("pylonctl certs init"),
                "{msg}"
            );
        }
        // The other command's https address does not matter.
        let env_app_only = env_of(&[("XDG_CONFIG_HOME", xdg), (ENV_APP_ENDPOINT, "https://a")]);
        assert!(resolve(&control, &env_app_only).is_ok());

        // With --ca: accepted, and the CA is kept.
        let with_ca = Flags {
            ca: Some("/etc/pylon/ca.pem".into()),
            ..control.clone()
        };
        let s = resolve(&with_ca, &env).unwrap();
        assert_eq!(s.endpoint, "https://10.0.0.5:7400");
        assert_eq!(s.ca, Some(PathBuf::from("/etc/pylon/ca.pem")));

        // From the environment.
        let env_ca = env_of(&[
            ("XDG_CONFIG_HOME", xdg),
            (ENV_APP_ENDPOINT, "https://10.0.0.7:7510/"),
            (ENV_CA, "/env/ca.pem"),
        ]);
        let s = resolve(&app, &env_ca).unwrap();
        assert_eq!(s.app_endpoint, "https://10.0.0.7:7510");
        assert_eq!(s.ca, Some(PathBuf::from("/env/ca.pem")));

        // From the config file, relative to its folder; the flag beats the env.
        let path = write_config(
            dir.path(),
            "endpoint = \"https://ctl:7400\"\nca = \"certs/ca.pem\"\n",
        );
        let env = env_of(&[("XDG_CONFIG_HOME", xdg)]);
        let s = resolve(&control, &env).unwrap();
        assert_eq!(s.endpoint, "https://ctl:7400");
        assert_eq!(s.ca, Some(path.parent().unwrap().join("certs/ca.pem")));
        let env = env_of(&[("XDG_CONFIG_HOME", xdg), (ENV_CA, "/env/ca.pem")]);
        assert_eq!(
            resolve(&with_ca, &env).unwrap().ca,
            Some(PathBuf::from("/etc/pylon/ca.pem"))
        );

        // A missing CA file is reported when the client is made.
        let s = resolve(&control, &env).unwrap();
        let err = s.trust_for(&s.endpoint).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("/env/ca.pem"), "{err}");
        assert!(s.trust_for("http://ctl:7400").unwrap().is_none());
        assert!(is_https("https://x") && is_https("HTTPS://x") && !is_https("http://x"));
    }

    #[test]
    fn a_client_certificate_comes_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let xdg = dir.path().to_str().unwrap();
        let empty = tempfile::tempdir().unwrap();
        let no_file = env_of(&[("XDG_CONFIG_HOME", empty.path().to_str().unwrap())]);

        // Neither: no client certificate, and nothing to say.
        let s = resolve(&Flags::default(), &no_file).unwrap();
        assert_eq!(s.client_cert, None);

        // Both, as flags.
        let flags = Flags {
            cert: Some("/etc/pylon/op.pem".into()),
            key: Some("/etc/pylon/op.key".into()),
            ..Flags::default()
        };
        let s = resolve(&flags, &no_file).unwrap();
        assert_eq!(
            s.client_cert,
            Some(crate::tls::ClientCert {
                cert: "/etc/pylon/op.pem".into(),
                key: "/etc/pylon/op.key".into(),
            })
        );

        // One without the other, from any source: refused, naming what is given and
        // where the other goes.
        let cert_only = Flags {
            cert: Some("/etc/pylon/op.pem".into()),
            ..Flags::default()
        };
        let key_only_env = env_of(&[
            ("XDG_CONFIG_HOME", empty.path().to_str().unwrap()),
            (ENV_KEY, "/env/op.key"),
        ]);
        for (flags, env, given, missing) in [
            (
                &cert_only,
                &no_file as &dyn Fn(&str) -> Option<String>,
                "/etc/pylon/op.pem",
                "without its key",
            ),
            (
                &Flags::default(),
                &key_only_env,
                "/env/op.key",
                "without its certificate",
            ),
        ] {
            let err = resolve(flags, env).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            let msg = err.to_string();
            assert!(
                msg.contains(given)
                    && msg.contains(missing)
                    && msg.contains("both or neither")
                    && msg.contains("--cert FILE and --key FILE")
                    && msg.contains(ENV_CERT)
                    && msg.contains("pylonctl certs issue"),
                "{msg}"
            );
        }
        // Empty values count as unset.
        let blank = Flags {
            cert: Some("".into()),
            key: Some("".into()),
            ..Flags::default()
        };
        assert_eq!(resolve(&blank, &no_file).unwrap().client_cert, None);

        // From the config file, relative to its folder; a pair may mix sources, and the
        // flag beats the environment beats the file.
        let path = write_config(
            dir.path(),
            "endpoint = \"https://ctl:7400\"\nca = \"certs/ca.pem\"\ncert = \"certs/op.pem\"\n\
             key = \"/abs/op.key\"\n",
        );
        let folder = path.parent().unwrap();
        let env = env_of(&[("XDG_CONFIG_HOME", xdg)]);
        let s = resolve(&Flags::default(), &env).unwrap();
        assert_eq!(
            s.client_cert,
            Some(crate::tls::ClientCert {
                cert: folder.join("certs/op.pem"),
                key: "/abs/op.key".into(),
            })
        );
        let env = env_of(&[
            ("XDG_CONFIG_HOME", xdg),
            (ENV_CERT, "/env/op.pem"),
            (ENV_KEY, "relative/op.key"),
        ]);
        let s = resolve(&Flags::default(), &env).unwrap();
        assert_eq!(
            s.client_cert,
            Some(crate::tls::ClientCert {
                // A relative path from the environment is the process's own.
                cert: "/env/op.pem".into(),
                key: "relative/op.key".into(),
            })
        );
        let s = resolve(&flags, &env).unwrap();
        assert_eq!(
            s.client_cert.map(|c| (c.cert, c.key)),
            Some(("/etc/pylon/op.pem".into(), "/etc/pylon/op.key".into()))
        );

        // The files are read when a client of an https URL is made, each error naming
        // its file; plain http reads none.
        let s = resolve(&Flags::default(), &env_of(&[("XDG_CONFIG_HOME", xdg)])).unwrap();
        assert!(s.trust_for("http://ctl:7400").unwrap().is_none());
        let err = s.trust_for(&s.endpoint).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("certs/ca.pem"), "{err}");

        let files = crate::client::tests::tls_files();
        let ca = files.path().join("ca.pem");
        let with = |cert: &Path, key: &Path| Settings {
            ca: Some(ca.clone()),
            client_cert: Some(crate::tls::ClientCert {
                cert: cert.to_owned(),
                key: key.to_owned(),
            }),
            ..s.clone()
        };
        let (pem, key) = (
            files.path().join("server.pem"),
            files.path().join("server.key"),
        );
        let trust = with(&pem, &key)
            .trust_for("https://ctl:7400")
            .unwrap()
            .unwrap();
        assert_eq!(trust.client_cert.map(|c| c.cert), Some(pem.clone()));
        let missing = files.path().join("nope.pem");
        let err = with(&missing, &key)
            .trust_for("https://ctl:7400")
            .unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert_eq!(
            err.to_string(),
            format!(
                "the client certificate file {} (--cert / PYLON_CERT / cert in the config \
                 file) does not exist",
                missing.display()
            )
        );
        let err = with(&pem, &missing)
            .trust_for("https://ctl:7400")
            .unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "the client key file {} (--key / PYLON_KEY",
                missing.display()
            )),
            "{err}"
        );
    }

    #[test]
    fn url_host_finds_the_host() {
        assert_eq!(url_host("http://10.0.0.5:7400/x"), Some("10.0.0.5"));
        assert_eq!(url_host("http://[::1]:7400"), Some("[::1]"));
        assert_eq!(url_host("ctl.example:7400"), Some("ctl.example"));
        assert_eq!(url_host("http://"), None);
    }
}
