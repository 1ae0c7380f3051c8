//! Pylon's keys in etcd, as a file: what `restore --etcd` writes back into a running
//! cluster, with no etcd tool and whatever etcd version the cluster runs.
//!
//! The etcd snapshot beside it restores the whole keyspace (Patroni's keys too) and needs
//! `etcdutl` or `etcdctl` on every member. These are only the control plane's keys under
//! [`PREFIX`] that outlive their writer: keys held by a lease (an edge's or an instance's
//! presence, the leader's claim) belong to live processes, which write them again.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use etcd_client::{Client, ConnectOptions, GetOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};

/// The control plane's keys (`pylon_control::cluster::ROOT`).
pub const PREFIX: &str = "/pylon/";
/// Where the file goes back when no folder is given: beside the working directory.
pub const FILE: &str = "etcd-keys.json";
/// Operations per etcd transaction (etcd allows 128 by default).
const TXN_OPS: usize = 64;

#[derive(Debug, Serialize, Deserialize)]
pub struct KeysFile {
    pub prefix: String,
    /// The etcd revision the keys were read at.
    pub revision: i64,
    pub keys: Vec<Key>,
}

/// One key and its value, both hex (keys and values are bytes to etcd).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    pub key: String,
    pub value: String,
}

/// What loading changed in the cluster.
#[derive(Debug, PartialEq, Eq)]
pub struct Loaded {
    pub written: usize,
    /// Keys under the prefix without a lease that the backup does not hold.
    pub removed: usize,
}

async fn connect(endpoints: &[String]) -> anyhow::Result<Client> {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(30));
    Client::connect(endpoints, Some(options))
        .await
        .with_context(|| format!("connecting to etcd at {}", endpoints.join(",")))
}

/// The keys under [`PREFIX`] without a lease, read at one revision.
async fn lasting_keys(client: &mut Client) -> anyhow::Result<(i64, Vec<Key>)> {
    let answer = client
        .get(PREFIX, Some(GetOptions::new().with_prefix()))
        .await
        .context("reading the registry's keys")?;
    let revision = answer.header().map_or(0, |h| h.revision());
    let keys = answer
        .kvs()
        .iter()
        .filter(|kv| kv.lease() == 0)
        .map(|kv| Key {
            key: hex::encode(kv.key()),
            value: hex::encode(kv.value()),
        })
        .collect();
    Ok((revision, keys))
}

/// Writes the registry's lasting keys from the first endpoint that answers to `to`.
pub async fn export(endpoints: &[String], to: &Path) -> anyhow::Result<usize> {
    let mut client = connect(endpoints).await?;
    let (revision, keys) = lasting_keys(&mut client).await?;
    let count = keys.len();
    let file = KeysFile {
        prefix: PREFIX.into(),
        revision,
        keys,
    };
    std::fs::write(to, serde_json::to_vec(&file)?)
        .with_context(|| format!("writing {}", to.display()))?;
    Ok(count)
}

/// Reads and checks a keys file; says what it holds.
pub fn read(path: &Path) -> anyhow::Result<KeysFile> {
    let file: KeysFile = serde_json::from_slice(&std::fs::read(path)?)
        .context("the registry's keys are not a keys file")?;
    if file.prefix != PREFIX {
        bail!(
            "the keys file is for prefix {:?}, not {PREFIX:?}",
            file.prefix
        );
    }
    for k in &file.keys {
        let key = hex::decode(&k.key).context("a key is not hex")?;
        hex::decode(&k.value).context("a value is not hex")?;
        if !key.starts_with(PREFIX.as_bytes()) {
            bail!("a key lies outside {PREFIX}");
        }
    }
    Ok(file)
}

/// Makes the cluster's lasting keys under [`PREFIX`] those of the file: each of its keys
/// written, the others (without a lease) removed. Keys outside the prefix and keys held by
/// a lease are left alone.
pub async fn load(endpoints: &[String], path: &Path) -> anyhow::Result<Loaded> {
    let file = read(path)?;
    let mut client = connect(endpoints).await?;
    let (_, present) = lasting_keys(&mut client).await?;
    let plan = plan(&present, &file.keys);
    let mut ops = Vec::with_capacity(plan.len());
    for op in &plan {
        ops.push(match op {
            Change::Put(k) => TxnOp::put(hex::decode(&k.key)?, hex::decode(&k.value)?, None),
            Change::Delete(key) => TxnOp::delete(hex::decode(key)?, None),
        });
    }
    // In batches: a restore of thousands of keys exceeds one transaction's limit. Each
    // batch is whole; a failure part-way leaves earlier batches applied, and running the
    // restore again finishes it.
    while !ops.is_empty() {
        let rest = ops.split_off(ops.len().min(TXN_OPS));
        client
            .txn(Txn::new().and_then(ops))
            .await
            .context("writing the registry's keys")?;
        ops = rest;
    }
    Ok(Loaded {
        written: file.keys.len(),
        removed: plan
            .iter()
            .filter(|c| matches!(c, Change::Delete(_)))
            .count(),
    })
}

#[derive(Debug, PartialEq, Eq)]
enum Change<'a> {
    Put(&'a Key),
    /// A key (hex) the backup does not hold.
    Delete(&'a str),
}

/// What turns the cluster's lasting keys into the backup's: unchanged keys are left
/// alone.
fn plan<'a>(present: &'a [Key], wanted: &'a [Key]) -> Vec<Change<'a>> {
    let now: std::collections::HashMap<&str, &str> = present
        .iter()
        .map(|k| (k.key.as_str(), k.value.as_str()))
        .collect();
    let keep: std::collections::HashSet<&str> = wanted.iter().map(|k| k.key.as_str()).collect();
    let deletes = present
        .iter()
        .filter(|k| !keep.contains(k.key.as_str()))
        .map(|k| Change::Delete(k.key.as_str()));
    let puts = wanted
        .iter()
        .filter(|k| now.get(k.key.as_str()) != Some(&k.value.as_str()))
        .map(Change::Put);
    deletes.chain(puts).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str, v: &str) -> Key {
        Key {
            key: hex::encode(k),
            value: hex::encode(v),
        }
    }

    #[test]
    fn the_plan_removes_what_the_backup_lacks_and_writes_what_differs() {
        let present = vec![
            key("/pylon/a", "1"),
            key("/pylon/b", "2"),
            key("/pylon/new", "x"),
        ];
        let wanted = vec![
            key("/pylon/a", "1"),
            key("/pylon/b", "old"),
            key("/pylon/c", "3"),
        ];
        let plan = plan(&present, &wanted);
        assert_eq!(
            plan,
            vec![
                Change::Delete(&present[2].key),
                Change::Put(&wanted[1]),
                Change::Put(&wanted[2]),
            ]
        );
    }

    #[test]
    fn a_file_with_keys_outside_the_prefix_or_not_hex_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let write = |keys: Vec<Key>| {
            let file = KeysFile {
                prefix: PREFIX.into(),
                revision: 1,
                keys,
            };
            std::fs::write(&path, serde_json::to_vec(&file).unwrap()).unwrap();
        };
        write(vec![key("/pylon/a", "1")]);
        assert_eq!(read(&path).unwrap().keys.len(), 1);
        write(vec![key("/service/patroni/leader", "1")]);
        assert!(read(&path).is_err());
        write(vec![Key {
            key: "zz".into(),
            value: "00".into(),
        }]);
        assert!(read(&path).is_err());
    }
}
