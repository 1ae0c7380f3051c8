//! How `pylonctl top` prints a refresh for people: a header line, then one block per
//! edge with its figures as `key  value` rows (`-o json` prints the
//! [`Refresh`] itself, one object per line).

use std::time::Duration;

use crate::commands::top::{EdgeReport, EdgeStatus, Refresh, Split};

/// Executors per line of the executors row.
const EXECUTORS_PER_LINE: usize = 8;

fn rate_text(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
}

fn split_text(s: &Option<Split>) -> String {
    match s {
        None => "-".to_owned(),
        Some(s) if s.by_transport.is_empty() => s.total.to_string(),
        Some(s) => {
            let parts: Vec<String> = s
                .by_transport
                .iter()
                .map(|(t, n)| format!("{t} {n}"))
                .collect();
            format!("{}  ({})", s.total, parts.join(", "))
        }
    }
}

/// `2s`, `0.5s`.
fn secs_text(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

/// Rows of `key  value`, keys (with their indent) padded to one width.
fn rows_text(rows: &[(String, String)]) -> String {
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    rows.iter()
        .map(|(k, v)| {
            let line = format!("  {k}{}  {v}", " ".repeat(width - k.chars().count()));
            format!("{}\n", line.trim_end())
        })
        .collect()
}

/// One edge's block: `EDGE <url>`, then its figures, or why there are none.
pub(crate) fn render_edge(r: &EdgeReport) -> String {
    let mut out = format!("EDGE {}\n", r.edge);
    let error = r.error.as_deref().unwrap_or("no reason given");
    let s = match (&r.status, &r.stats) {
        (EdgeStatus::Unreachable, _) => {
            out.push_str(&format!("  unreachable ({error})\n"));
            return out;
        }
        (EdgeStatus::Error, _) | (EdgeStatus::Ok, None) => {
            out.push_str(&format!("  error: {error}\n"));
            return out;
        }
        (EdgeStatus::Ok, Some(s)) => s,
    };
    let mut rows: Vec<(String, String)> = vec![
        ("sessions".into(), split_text(&s.sessions)),
        ("connections".into(), split_text(&s.connections)),
    ];
    match (
        s.executors.iter().map(|e| e.connections).min(),
        s.executors.iter().map(|e| e.connections).max(),
    ) {
        (Some(min), Some(max)) => {
            rows.push((
                "executors".into(),
                format!("{}, connections min {min}, max {max}", s.executors.len()),
            ));
            for chunk in s.executors.chunks(EXECUTORS_PER_LINE) {
                let cells: Vec<String> = chunk
                    .iter()
                    .map(|e| format!("{}: {}", e.executor, e.connections))
                    .collect();
                rows.push((String::new(), cells.join("  ")));
            }
        }
        _ => rows.push(("executors".into(), "-".into())),
    }
    rows.push(("heartbeats/s".into(), rate_text(s.heartbeats_per_sec)));
    rows.push(("frames in/s".into(), rate_text(s.frames_in_per_sec)));
    if let Some(k) = &s.kernel {
        rows.push(("kernel (eBPF)".into(), String::new()));
        if let Some(p) = &k.placed_per_sec {
            rows.push((
                "  placed/s".into(),
                format!(
                    "by cpu {}  fallback {}",
                    rate_text(p.by_cpu),
                    rate_text(p.fallback)
                ),
            ));
        }
        if let Some(t) = &k.tcp_per_sec {
            rows.push((
                "  tcp entries/s".into(),
                format!(
                    "established {}  close_wait {}  syn_recv {}",
                    rate_text(t.established),
                    rate_text(t.close_wait),
                    rate_text(t.syn_recv)
                ),
            ));
            rows.push(("  retransmits/s".into(), rate_text(t.retransmits)));
        }
        if let Some(g) = &k.syn_guard_per_sec {
            rows.push((
                "  syn guard/s".into(),
                format!(
                    "passed {}  dropped {}",
                    rate_text(g.passed),
                    rate_text(g.dropped)
                ),
            ));
        }
    }
    out.push_str(&rows_text(&rows));
    out
}

/// A refresh for people: a header line, then a block per edge, each followed by a
/// blank line.
pub(crate) fn render_refresh(r: &Refresh, interval: Duration) -> String {
    let of = r.count.map(|n| format!(" of {n}")).unwrap_or_default();
    let first = if r.refresh == 1 {
        "  (rates from the next refresh on)"
    } else {
        ""
    };
    let mut out = format!(
        "pylonctl top  {}  every {}  refresh {}{of}{first}\n\n",
        r.time,
        secs_text(interval),
        r.refresh
    );
    for edge in &r.edges {
        out.push_str(&render_edge(edge));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests;
