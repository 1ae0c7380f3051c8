//! A CPU profile of running processes: `perf record` with DWARF call stacks, folded and
//! drawn as a flame graph (inferno), and summed up as where the time goes.

use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::Serialize;

/// Where the time goes, in shares of all samples (0 to 1).
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    pub svg: PathBuf,
    /// perf's weight of all samples (event periods), what the shares are of.
    pub weight: u64,
    /// Samples whose innermost frame is in the kernel.
    pub kernel_share: f64,
    /// Each sample in the first bucket that one of its frames matches, innermost first.
    pub buckets: Vec<(String, f64)>,
    /// Innermost frames (self time).
    pub top_self: Vec<(String, f64)>,
}

/// What a frame's name says it is doing, in the order they are tried on each frame from
/// the innermost out (so a send inside TLS counts as the send).
const BUCKETS: &[(&str, &[&str])] = &[
    (
        "park (epoll_wait, io_uring wait)",
        &["do_epoll_wait", "io_cqring_wait", "epoll_wait"],
    ),
    (
        "socket send",
        &[
            "tcp_sendmsg",
            "sock_sendmsg",
            "__sys_sendto",
            "sendmsg",
            "writev",
        ],
    ),
    (
        "socket receive",
        &[
            "tcp_recvmsg",
            "sock_recvmsg",
            "__sys_recvfrom",
            "sock_read_iter",
        ],
    ),
    ("TLS (rustls, ring)", &["rustls::", "ring::", "ring_core_"]),
    ("YKC codec", &["pylon_proto::ykc"]),
    (
        "sessions and timers",
        &["pylon_edge::session", "pylon_edge::executor"],
    ),
    ("runtime (glommio)", &["glommio::"]),
    (
        "memory (alloc, free)",
        &[
            "malloc",
            "free",
            "realloc",
            "__rust_alloc",
            "__rust_dealloc",
        ],
    ),
];
/// Samples no bucket names, by where their innermost frame is.
const OTHER_KERNEL: &str = "other kernel";
const OTHER_USER: &str = "other user code";

/// Profiles `pids` for `secs` seconds into `<dir>/<name>.svg`. `Ok(None)` when perf is
/// not installed (the bench goes on without a profile).
pub fn record(
    pids: &[u32],
    secs: u64,
    dir: &Path,
    name: &str,
    title: &str,
) -> anyhow::Result<Option<Profile>> {
    if Command::new("perf").arg("--version").output().is_err() {
        eprintln!("  no CPU profile: perf is not installed (apt install linux-perf)");
        return Ok(None);
    }
    let data = dir.join(format!("{name}.perf.data"));
    let pid_list = pids
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    eprintln!("  profiling {name} for {secs} s (perf record)");
    let status = Command::new("perf")
        .args([
            "record",
            "-F",
            "199",
            "--call-graph",
            "dwarf,16384",
            "-p",
            &pid_list,
            "-o",
        ])
        .arg(&data)
        .args(["--", "sleep", &secs.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "perf record failed ({status})");
    let mut script = Command::new("perf")
        .args(["script", "-i"])
        .arg(&data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = script
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("perf script has no output"))?;
    let mut folded = Vec::new();
    let mut options = inferno::collapse::perf::Options::default();
    options.annotate_kernel = true;
    inferno::collapse::Collapse::collapse(
        &mut inferno::collapse::perf::Folder::from(options),
        BufReader::new(stdout),
        &mut folded,
    )?;
    let _ = script.wait();
    let _ = std::fs::remove_file(&data);
    let folded = String::from_utf8_lossy(&folded).into_owned();
    // Kept for other views of the same profile (e.g. `inferno-flamegraph --reverse`).
    std::fs::write(dir.join(format!("{name}.folded")), &folded)?;
    let svg = dir.join(format!("{name}.svg"));
    let mut graph = inferno::flamegraph::Options::default();
    graph.title = title.to_owned();
    let mut file = std::fs::File::create(&svg)?;
    inferno::flamegraph::from_lines(&mut graph, folded.lines(), &mut file)?;
    file.flush()?;
    let mut profile = summarise(&folded);
    profile.svg = svg;
    Ok(Some(profile))
}

/// Whether `frame` names `pattern`. A crate path (`ring::`) counts only as a whole name:
/// glommio's `sys::uring::` is not the `ring` crate.
fn names(frame: &str, pattern: &str) -> bool {
    if !pattern.ends_with("::") {
        return frame.contains(pattern);
    }
    frame.match_indices(pattern).any(|(i, _)| {
        frame[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
    })
}

/// Shares of the folded stacks (`outer;...;inner count` per line).
pub fn summarise(folded: &str) -> Profile {
    let mut total = 0u64;
    let mut kernel = 0u64;
    let mut buckets: Vec<(String, u64)> = BUCKETS
        .iter()
        .map(|(name, _)| ((*name).to_owned(), 0))
        .chain([(OTHER_KERNEL.to_owned(), 0), (OTHER_USER.to_owned(), 0)])
        .collect();
    let mut leaves: std::collections::HashMap<String, u64> = Default::default();
    for line in folded.lines() {
        let Some((stack, count)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(count) = count.trim().parse::<u64>() else {
            continue;
        };
        total += count;
        let frames: Vec<&str> = stack.split(';').collect();
        let leaf = frames.last().copied().unwrap_or("?");
        if leaf.ends_with("_[k]") {
            kernel += count;
        }
        *leaves.entry(leaf.to_owned()).or_default() += count;
        let bucket = frames
            .iter()
            .rev()
            .find_map(|frame| {
                BUCKETS
                    .iter()
                    .position(|(_, patterns)| patterns.iter().any(|p| names(frame, p)))
            })
            .unwrap_or(if leaf.ends_with("_[k]") {
                BUCKETS.len()
            } else {
                BUCKETS.len() + 1
            });
        buckets[bucket].1 += count;
    }
    let share = |n: u64| n as f64 / total.max(1) as f64;
    let mut top: Vec<(String, u64)> = leaves.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    buckets.sort_by_key(|b| std::cmp::Reverse(b.1));
    Profile {
        svg: PathBuf::new(),
        weight: total,
        kernel_share: share(kernel),
        buckets: buckets
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(name, n)| (name, share(n)))
            .collect(),
        top_self: top
            .into_iter()
            .take(12)
            .map(|(name, n)| (name, share(n)))
            .collect(),
    }
}

/// The profile as Markdown, for the bench report.
pub fn markdown(p: &Profile) -> String {
    let mut md = format!(
        "\n### Where the edge's CPU time goes (perf weight {}; flame graph: {})\n\n\
         {:.0} % of it in the kernel. Each sample counts in the first part one of its \
         frames names, from the innermost out.\n\n| part | share |\n|---|---|\n",
        p.weight,
        p.svg.display(),
        p.kernel_share * 100.0
    );
    for (name, share) in &p.buckets {
        md += &format!("| {name} | {:.1} % |\n", share * 100.0);
    }
    md += "\n| function (self time) | share |\n|---|---|\n";
    for (name, share) in &p.top_self {
        md += &format!(
            "| `{}` | {:.1} % |\n",
            name.replace('|', "\\|"),
            share * 100.0
        );
    }
    md
}

/// How long to profile: ten seconds, or less in a short hold.
pub fn window(hold_secs: u64) -> Duration {
    Duration::from_secs(hold_secs.clamp(3, 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacks_fall_in_the_innermost_bucket_that_names_them() {
        let folded = "\
main;glommio::executor::run;do_epoll_wait_[k] 50
main;pylon_edge::executor::connection::run;rustls::conn::read;tcp_recvmsg_[k] 10
main;pylon_edge::executor::connection::run;rustls::conn::process;ring_core_0_17_aes 25
main;pylon_edge::executor::connection::run;pylon_proto::ykc::codec::decode 10
main;somewhere_else 3
main;pylon_edge::executor::connection::flush;tcp_sendmsg_[k];tcp_ack_[k] 1
main;ret_from_fork_[k];kworker_[k] 1
";
        let p = summarise(folded);
        assert_eq!(p.weight, 100);
        assert!((p.kernel_share - 0.62).abs() < 1e-9);
        let share = |name: &str| {
            p.buckets
                .iter()
                .find(|(n, _)| n.starts_with(name))
                .map_or(0.0, |(_, s)| *s)
        };
        assert!((share("park") - 0.5).abs() < 1e-9);
        assert!(
            (share("socket receive") - 0.1).abs() < 1e-9,
            "the read inside TLS is the socket's"
        );
        assert!((share("TLS") - 0.25).abs() < 1e-9);
        assert!((share("YKC codec") - 0.1).abs() < 1e-9);
        assert!((share("other user code") - 0.03).abs() < 1e-9);
        assert!(
            (share("socket send") - 0.01).abs() < 1e-9,
            "a kernel leaf under a send"
        );
        assert!((share("other kernel") - 0.01).abs() < 1e-9);
        assert_eq!(p.top_self[0].0, "do_epoll_wait_[k]");
    }

    #[test]
    fn a_crate_path_counts_only_as_a_whole_name() {
        assert!(names("ring::aead::seal", "ring::"));
        assert!(names("<ring::digest::Context as Clone>::clone", "ring::"));
        assert!(!names("glommio::sys::uring::Reactor::wait", "ring::"));
        assert!(names("glommio::sys::uring::Reactor::wait", "glommio::"));
        assert!(!names(
            "tokio_rustls::client::TlsStream::poll_read",
            "rustls::"
        ));
        assert!(names("ring_core_0_17_aes", "ring_core_"));
    }
}
