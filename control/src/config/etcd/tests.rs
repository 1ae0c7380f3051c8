use super::*;

fn files(dir: &str) -> TlsFiles {
    TlsFiles {
        ca: Some(PathBuf::from(format!("{dir}/ca.pem"))),
        cert: Some(PathBuf::from(format!("{dir}/c.pem"))),
        key: Some(PathBuf::from(format!("{dir}/c.key"))),
    }
}

fn urls(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn loopback_endpoints_are_local_and_others_are_not() {
    for local in [
        "http://127.0.0.1:2379",
        "http://127.3.4.5:2379",
        "http://localhost:2379",
        "http://[::1]:2379",
        "127.0.0.1:2379",
    ] {
        assert!(is_local(local), "{local}");
    }
    for remote in [
        "http://10.0.0.1:2379",
        "http://etcd-1:2379",
        "http://[fe80::1]:2379",
        "not a url",
    ] {
        assert!(!is_local(remote), "{remote}");
    }
}

#[test]
fn plaintext_etcd_elsewhere_is_refused_unless_insecure_dev() {
    let security = EtcdSecurity::default();
    let none = TlsFiles::default();
    let remote = urls(&["http://10.0.0.1:2379", "http://127.0.0.1:2379"]);
    let e = security.validate(&remote, &none, false).unwrap_err();
    assert!(e.to_string().contains("10.0.0.1:2379"), "{e}");
    assert!(!e.to_string().contains("127.0.0.1"), "{e}");
    security.validate(&remote, &none, true).unwrap();
    security
        .validate(&urls(&["http://127.0.0.1:2379"]), &none, false)
        .unwrap();
}

#[test]
fn https_takes_etcds_own_files_else_the_cluster_certificate() {
    let endpoints = urls(&["https://10.0.0.1:2379", "https://10.0.0.2:2379"]);
    let cluster = files("/cluster");
    let mut security = EtcdSecurity::default();
    security.validate(&endpoints, &cluster, false).unwrap();
    assert_eq!(
        security.tls_files(&endpoints, &cluster).unwrap(),
        Some(&cluster)
    );
    let e = security
        .validate(&endpoints, &TlsFiles::default(), true)
        .unwrap_err();
    assert!(e.to_string().contains("--etcd-ca"), "{e}");

    security.tls = files("/etcd");
    security
        .validate(&endpoints, &TlsFiles::default(), false)
        .unwrap();
    assert_eq!(
        security.tls_files(&endpoints, &cluster).unwrap(),
        Some(&files("/etcd"))
    );
    assert_eq!(
        security
            .tls_files(&urls(&["http://127.0.0.1:1"]), &cluster)
            .unwrap(),
        None
    );
}

#[test]
fn settings_that_cannot_work_are_refused() {
    let cluster = files("/cluster");
    let https = urls(&["https://10.0.0.1:2379"]);
    // Mixed schemes.
    let mixed = urls(&["https://10.0.0.1:2379", "http://127.0.0.1:2379"]);
    let e = EtcdSecurity::default()
        .validate(&mixed, &cluster, true)
        .unwrap_err();
    assert!(e.to_string().contains("mix"), "{e}");
    // Part of the TLS files.
    let partial = EtcdSecurity {
        tls: TlsFiles {
            key: None,
            ..files("/etcd")
        },
        ..Default::default()
    };
    assert!(partial.validate(&https, &cluster, false).is_err());
    // TLS files with http:// endpoints.
    let plain_with_files = EtcdSecurity {
        tls: files("/etcd"),
        ..Default::default()
    };
    let e = plain_with_files
        .validate(&urls(&["http://127.0.0.1:2379"]), &cluster, false)
        .unwrap_err();
    assert!(e.to_string().contains("https://"), "{e}");
    // A user without a password, and a password without a user.
    let user = EtcdSecurity {
        user: Some("pylon".into()),
        ..Default::default()
    };
    let e = user.validate(&https, &cluster, false).unwrap_err();
    assert!(e.to_string().contains("PYLON_ETCD_PASSWORD"), "{e}");
    let password = EtcdSecurity {
        password: Some(Password("secret".into())),
        ..Default::default()
    };
    assert!(password.validate(&https, &cluster, false).is_err());
}

#[test]
fn credentials_come_from_the_environment_or_a_file_and_never_show_in_debug() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("etcd.password");
    std::fs::write(&file, "from-the-file\n").unwrap();
    let mut security = EtcdSecurity {
        user: Some("pylon".into()),
        password_file: Some(file.clone()),
        ..Default::default()
    };
    assert_eq!(
        security.credentials().unwrap(),
        Some(("pylon".into(), "from-the-file".into()))
    );
    security.password = Some(Password("from-the-env".into()));
    assert_eq!(
        security.credentials().unwrap(),
        Some(("pylon".into(), "from-the-env".into()))
    );
    assert!(!format!("{security:?}").contains("from-the-env"));

    std::fs::write(&file, "\n").unwrap();
    security.password = None;
    let e = security.credentials().unwrap_err();
    assert!(e.to_string().contains("empty"), "{e}");
    assert_eq!(EtcdSecurity::default().credentials().unwrap(), None);
}

#[test]
fn the_file_form_is_registry_etcd() {
    let config: crate::config::Config = toml::from_str(
        "[registry]\nbackend = \"etcd\"\nendpoints = [\"https://10.0.0.1:2379\"]\n\
         [registry.etcd]\nuser = \"pylon\"\npassword_file = \"/etc/pylon/etcd.password\"\n\
         [registry.etcd.tls]\nca = \"/etc/pylon/etcd-ca.pem\"\ncert = \"/etc/pylon/c.pem\"\n\
         key = \"/etc/pylon/c.key\"\n",
    )
    .unwrap();
    assert_eq!(config.registry.etcd.user.as_deref(), Some("pylon"));
    assert!(config.registry.etcd.tls.ca.is_some());
    assert!(
        toml::from_str::<crate::config::Config>("[registry.etcd]\npassword = \"x\"\n").is_err()
    );
}
