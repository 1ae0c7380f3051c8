//! How `pylonctl alarms` prints alarms for people.

use std::fmt::Write as _;

use pylon_proto::api::monitor::{Alarm, AlarmPage};

use super::control::{fields, table};
use crate::units::{format_time, format_time_or};

/// `alarms list`, newest first.
pub fn alarms(page: &AlarmPage, state: &str) -> String {
    if page.alarms.is_empty() {
        return format!("No {state} alarms.\n");
    }
    let rows: Vec<Vec<String>> = page
        .alarms
        .iter()
        .map(|a| {
            vec![
                a.id.to_string(),
                a.severity.as_str().to_owned(),
                a.state.as_str().to_owned(),
                a.kind.clone(),
                a.subject.clone(),
                a.count.to_string(),
                format_time(a.first_at),
                format_time(a.last_at),
                a.text.clone(),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "ID", "SEVERITY", "STATE", "KIND", "SUBJECT", "COUNT", "FIRST", "LAST", "WHAT",
        ],
        &rows,
    );
    if let Some(next) = page.next {
        let _ = writeln!(
            out,
            "\nMore: pylonctl alarms list --state {state} --after {next}"
        );
    }
    out
}

/// One alarm after `ack` or `resolve`.
pub fn alarm(a: &Alarm) -> String {
    let who = |by: &Option<String>, at: Option<i64>| match by {
        Some(by) => format!("{by}, {}", format_time_or(at, "-")),
        None => "-".into(),
    };
    fields(&[
        ("alarm", a.id.to_string()),
        ("state", a.state.as_str().to_owned()),
        ("severity", a.severity.as_str().to_owned()),
        ("kind", a.kind.clone()),
        ("subject", a.subject.clone()),
        ("what", a.text.clone()),
        ("count", a.count.to_string()),
        ("first", format_time(a.first_at)),
        ("last", format_time(a.last_at)),
        ("acknowledged", who(&a.acked_by, a.acked_at)),
        ("resolved", who(&a.resolved_by, a.resolved_at)),
    ])
}
