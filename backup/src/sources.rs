//! Taking a consistent copy of each thing a backup holds, while Pylon keeps running.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};

/// How often a copy is taken again when its source changed under it.
const TRIES: usize = 5;

/// The app's SQLite database copied with SQLite's online backup API into `to`: one step
/// over all pages, inside one read transaction, so the copy is the database at one moment
/// (in WAL mode the app's writers are not held up meanwhile).
pub fn sqlite(db: &Path, to: &Path) -> anyhow::Result<()> {
    use rusqlite::backup::{Backup, StepResult};
    use rusqlite::{Connection, OpenFlags};
    if !db.is_file() {
        bail!("the SQLite store {} does not exist", db.display());
    }
    let source = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("opening {}", db.display()))?;
    source.busy_timeout(Duration::from_secs(10))?;
    let mut copy = Connection::open(to).with_context(|| format!("creating {}", to.display()))?;
    let backup = Backup::new(&source, &mut copy)?;
    let mut waited = Duration::ZERO;
    loop {
        match backup.step(-1)? {
            StepResult::Done => break,
            StepResult::More => {}
            StepResult::Busy | StepResult::Locked => {
                if waited > Duration::from_secs(60) {
                    bail!("{} stayed locked for a minute", db.display());
                }
                std::thread::sleep(Duration::from_millis(100));
                waited += Duration::from_millis(100);
            }
            other => bail!("SQLite backup step: {other:?}"),
        }
    }
    drop(backup);
    copy.close().map_err(|(_, e)| e)?;
    Ok(())
}

/// The identity of a file's current content: a snapshot is replaced by a rename.
fn identity(path: &Path) -> Option<(u64, i128, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(path).ok()?;
    Some((
        m.ino(),
        i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        m.len(),
    ))
}

/// The embedded registry's snapshot and journal copied into `snapshot_to` and
/// `journal_to` (None: it has no journal). The control plane may compact meanwhile (a new
/// snapshot, a new journal): the pair is copied again until the snapshot did not change
/// while its journal was copied. A journal line cut short at the end is an unacknowledged
/// change, which the registry ignores when it opens.
pub fn embedded_registry(
    snapshot: &Path,
    snapshot_to: &Path,
    journal_to: &Path,
) -> anyhow::Result<bool> {
    let journal = journal_of(snapshot);
    for _ in 0..TRIES {
        let before = identity(snapshot)
            .with_context(|| format!("the registry file {} does not exist", snapshot.display()))?;
        fs::copy(snapshot, snapshot_to)
            .with_context(|| format!("copying {}", snapshot.display()))?;
        let has_journal = match fs::copy(&journal, journal_to) {
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(e).with_context(|| format!("copying {}", journal.display())),
        };
        if identity(snapshot) == Some(before) {
            return Ok(has_journal);
        }
    }
    bail!(
        "the registry at {} was compacted {TRIES} times while it was copied",
        snapshot.display()
    )
}

/// The journal beside an embedded registry's snapshot.
pub fn journal_of(snapshot: &Path) -> PathBuf {
    let mut name = snapshot.as_os_str().to_owned();
    name.push(".journal");
    PathBuf::from(name)
}

/// A snapshot of etcd's whole keyspace from the first endpoint that gives one.
pub async fn etcd_snapshot(endpoints: &[String], to: &Path) -> anyhow::Result<()> {
    use std::io::Write;
    let mut errors = Vec::new();
    for endpoint in endpoints {
        let attempt = async {
            let options = etcd_client::ConnectOptions::new()
                .with_connect_timeout(Duration::from_secs(5))
                .with_timeout(Duration::from_secs(300));
            let mut client =
                etcd_client::Client::connect([endpoint.as_str()], Some(options)).await?;
            let mut stream = client.snapshot().await?;
            let mut file = std::io::BufWriter::new(fs::File::create(to)?);
            while let Some(chunk) = stream.message().await? {
                file.write_all(chunk.blob())?;
            }
            file.flush()?;
            anyhow::Ok(())
        };
        match attempt.await {
            Ok(()) => return Ok(()),
            Err(e) => errors.push(format!("{endpoint}: {e:#}")),
        }
    }
    bail!("no etcd snapshot: {}", errors.join("; "))
}

/// Checks an etcd snapshot's own checksum: etcd ends it with the SHA-256 of what precedes.
pub fn etcd_snapshot_intact(path: &Path) -> anyhow::Result<()> {
    use std::io::Read;
    let len = fs::metadata(path)?.len();
    if len < 32 {
        bail!("the etcd snapshot is too short ({len} bytes)");
    }
    let mut file = fs::File::open(path)?;
    let (sum, _) = crate::seal::checksum((&mut file).take(len - 32))?;
    let mut trailer = [0u8; 32];
    file.read_exact(&mut trailer)?;
    if sum != hex::encode(trailer) {
        bail!("the etcd snapshot's own checksum does not match");
    }
    Ok(())
}

/// Every file under `paths` (folders taken whole, symbolic links not followed), sorted.
pub fn files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = paths.to_vec();
    while let Some(path) = stack.pop() {
        let meta = fs::symlink_metadata(&path)
            .with_context(|| format!("{} (listed under files)", path.display()))?;
        if meta.is_dir() {
            for entry in fs::read_dir(&path)? {
                stack.push(entry?.path());
            }
        } else if meta.is_file() {
            out.push(path);
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_is_copied_while_it_is_open_for_writing() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        let live = rusqlite::Connection::open(&db).unwrap();
        live.pragma_update(None, "journal_mode", "wal").unwrap();
        live.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1), (2);")
            .unwrap();
        let copy = dir.path().join("copy.db");
        sqlite(&db, &copy).unwrap();
        live.execute("INSERT INTO t VALUES (3)", []).unwrap();
        let n: i64 = rusqlite::Connection::open(&copy)
            .unwrap()
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2);
    }

    #[test]
    fn folders_are_walked_and_an_etcd_trailer_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("etc")).unwrap();
        fs::write(dir.path().join("etc/a.toml"), "a").unwrap();
        fs::write(dir.path().join("keys"), "k").unwrap();
        let found = files(&[dir.path().join("etc"), dir.path().join("keys")]).unwrap();
        assert_eq!(found.len(), 2);
        assert!(files(&[dir.path().join("missing")]).is_err());

        let snap = dir.path().join("snap.db");
        let body = b"bolt pages".to_vec();
        let (sum, _) = crate::seal::checksum(&body[..]).unwrap();
        let mut with = body.clone();
        with.extend(hex::decode(sum).unwrap());
        fs::write(&snap, &with).unwrap();
        etcd_snapshot_intact(&snap).unwrap();
        with[0] ^= 1;
        fs::write(&snap, &with).unwrap();
        assert!(etcd_snapshot_intact(&snap).is_err());
    }
}
