//! How `pylonctl guard` prints an edge's replies for people: the SYN-flood guard's
//! counters and blocklist, and what `block` and `unblock` did.

use pylon_proto::api::edge::GuardStatus;

use super::control::table;

/// The counters as a one-row table, then the blocklist, one address a line.
pub(crate) fn render_status(s: &GuardStatus) -> String {
    let mut out = table(
        &["PASSED", "DROPPED (RATE)", "DROPPED (BLOCKLIST)"],
        &[vec![
            s.passed.to_string(),
            s.dropped_rate.to_string(),
            s.dropped_blocked.to_string(),
        ]],
    );
    out.push('\n');
    if s.blocklist.is_empty() {
        out.push_str("The blocklist is empty.\n");
    } else {
        let rows: Vec<Vec<String>> = s.blocklist.iter().map(|a| vec![a.clone()]).collect();
        out.push_str(&table(
            &[&format!("BLOCKLIST ({})", s.blocklist.len())],
            &rows,
        ));
    }
    out
}

/// The confirmation of `guard block`.
pub(crate) fn render_blocked(addr: &str) -> String {
    format!(
        "{addr} is blocked: the edge drops every SYN from it (connections open already are \
         not affected)\n"
    )
}

/// The confirmation of `guard unblock`.
pub(crate) fn render_unblocked(addr: &str) -> String {
    format!("{addr} is not blocked: its SYNs pass again, within the per-source rate\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::guard::tests::sample_status;

    #[test]
    fn status_renders_counters_then_the_blocklist() {
        assert_eq!(
            render_status(&sample_status()),
            "\
PASSED  DROPPED (RATE)  DROPPED (BLOCKLIST)
123456  789             42

BLOCKLIST (2)
198.51.100.23
203.0.113.7
"
        );
        assert_eq!(
            render_status(&GuardStatus::default()),
            "\
PASSED  DROPPED (RATE)  DROPPED (BLOCKLIST)
0       0               0

The blocklist is empty.
"
        );
    }
}
