//! How `pylonctl audit` prints the audit log and its check for people.

use std::fmt::Write as _;

use pylon_proto::api::audit::{AuditCheck, AuditEntry};

use super::control::{fields, table};
use crate::units::format_time;

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_owned()
    }
}

/// `audit list`, oldest first. `after` and `limit`: the query's, to say how to get the
/// next page.
pub fn entries(list: &[AuditEntry], after: Option<u64>, limit: u32) -> String {
    if list.is_empty() {
        return match after {
            Some(seq) => format!("No audit entries after {seq}.\n"),
            None => "The audit log is empty.\n".into(),
        };
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|e| {
            let r = &e.record;
            vec![
                e.seq.to_string(),
                format_time(i64::try_from(r.at_ms).unwrap_or(i64::MAX)),
                or_dash(&r.actor),
                r.role.as_str().to_owned(),
                or_dash(&r.service),
                or_dash(&r.action),
                or_dash(&r.target),
                or_dash(r.source.as_deref().unwrap_or_default()),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "SEQ", "TIME", "ACTOR", "ROLE", "SERVICE", "ACTION", "TARGET", "SOURCE",
        ],
        &rows,
    );
    if list.len() >= limit as usize {
        if let Some(last) = list.last() {
            let _ = writeln!(
                out,
                "\nThere may be more: pylonctl audit list --after {} --limit {limit}",
                last.seq
            );
        }
    }
    out
}

/// `audit verify`: intact, or where the chain breaks and why; and the head hash.
pub fn check(c: &AuditCheck) -> String {
    if c.intact {
        let mut out = fields(&[
            ("audit log", "intact".into()),
            ("entries", c.entries.to_string()),
            ("head hash", c.head_hash.clone()),
        ]);
        out.push_str(
            "\nEvery entry matches its hash and links to the one before. Keep the head hash \
             somewhere else (a ticket, another machine): a log rewritten from its first entry \
             on would verify too, but end in another hash.\n",
        );
        return out;
    }
    let at = c.broken_at.unwrap_or(0);
    let head = match at {
        0 | 1 => format!("{} (no entry verifies)", c.head_hash),
        n => format!(
            "{} (entry {}'s, the last that verifies)",
            c.head_hash,
            n - 1
        ),
    };
    let mut out = fields(&[
        ("audit log", format!("BROKEN at entry {at}")),
        (
            "why",
            c.problem.clone().unwrap_or_else(|| "not given".into()),
        ),
        ("entries", c.entries.to_string()),
        ("head hash", head),
    ]);
    let _ = writeln!(
        out,
        "\nEntries from {at} on cannot be trusted: one was removed, edited or reordered \
         after it was written. `pylonctl audit list --after {} -o json` shows them with \
         their hashes.",
        at.saturating_sub(2)
    );
    out
}

#[cfg(test)]
mod tests {
    use pylon_proto::api::audit::{seal, AuditRecord, GENESIS};
    use pylon_proto::auth::Role;

    use super::*;

    fn entry() -> AuditEntry {
        seal(
            1,
            GENESIS,
            AuditRecord {
                at_ms: 1_714_550_400_123,
                service: "control".into(),
                actor: "ana".into(),
                role: Role::Admin,
                token_id: None,
                action: "users.create".into(),
                target: "bo".into(),
                before: None,
                after: None,
                source: Some("10.0.0.9:51000".into()),
            },
        )
    }

    #[test]
    fn entries_are_a_table_with_the_next_page() {
        let e = entry();
        let mut second = e.clone();
        second.seq = 2;
        second.record.source = None;
        second.record.action = "edges.drain".into();
        second.record.target = "edge-1".into();
        let text = entries(&[e, second], None, 2);
        assert_eq!(
            text,
            "SEQ  TIME                  ACTOR  ROLE   SERVICE  ACTION        TARGET  SOURCE\n\
             1    2024-05-01T08:00:00Z  ana    admin  control  users.create  bo      10.0.0.9:51000\n\
             2    2024-05-01T08:00:00Z  ana    admin  control  edges.drain   edge-1  -\n\
             \nThere may be more: pylonctl audit list --after 2 --limit 2\n"
        );
        assert_eq!(entries(&[], None, 100), "The audit log is empty.\n");
        assert_eq!(entries(&[], Some(9), 100), "No audit entries after 9.\n");
    }

    #[test]
    fn a_check_says_intact_or_where_and_why_it_broke() {
        let intact = AuditCheck {
            entries: 3,
            intact: true,
            broken_at: None,
            problem: None,
            head_hash: "ab".repeat(32),
        };
        let text = check(&intact);
        assert!(
            text.starts_with(&format!(
                "audit log:  intact\nentries:    3\nhead hash:  {}\n",
                "ab".repeat(32)
            )),
            "{text}"
        );
        let broken = AuditCheck {
            entries: 5,
            intact: false,
            broken_at: Some(3),
            problem: Some("its content does not match its hash (edited)".into()),
            head_hash: "cd".repeat(32),
        };
        let text = check(&broken);
        assert!(
            text.starts_with(&format!(
                "audit log:  BROKEN at entry 3\nwhy:        its content does not match its \
                 hash (edited)\nentries:    5\nhead hash:  {} (entry 2's, the last that \
                 verifies)\n",
                "cd".repeat(32)
            )),
            "{text}"
        );
        assert!(
            text.contains("`pylonctl audit list --after 1 -o json`"),
            "{text}"
        );
    }
}
