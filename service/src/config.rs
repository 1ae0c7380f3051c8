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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
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
}
