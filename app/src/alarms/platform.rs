//! Platform alarms, sans-io: the registry as the control plane reports it
//! (`Membership.Platform`), compared with the previous report: an edge or app instance
//! gone without leaving, route subscribers lagging, certificates about to expire.

use std::collections::HashMap;

use pylon_proto::api::monitor::{RaiseAlarm, Severity};
use pylon_proto::control::PlatformReply;

use super::rules;

/// A subscriber this far behind the newest route table is an alarm.
pub const ROUTE_LAG_SECS: f64 = 30.0;
/// A certificate expiring within this many days is an alarm.
pub const CERT_DAYS: i64 = 14;

/// What to do with the alarm store after a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Raise(RaiseAlarm),
    /// Resolve the alarm of this key (if unresolved).
    Clear(String),
}

/// Remembers the last report (members and whether they were leaving).
#[derive(Debug, Default)]
pub struct PlatformWatch {
    previous: Option<(HashMap<String, bool>, HashMap<String, bool>)>,
}

fn gone(kind: &str, id: &str) -> RaiseAlarm {
    let what = if kind == "edge" {
        "edge"
    } else {
        "app instance"
    };
    RaiseAlarm {
        key: format!("{kind}_gone:{id}"),
        kind: format!("{kind}_gone"),
        severity: Severity::Critical,
        subject: format!("{kind} {id}"),
        text: format!(
            "{what} {id} left the cluster without leaving cleanly (its lease lapsed): it \
             crashed, hangs or lost the network"
        ),
        pile_no: None,
        gun_no: None,
    }
}

fn route_lag(id: &str, seconds: f64) -> RaiseAlarm {
    RaiseAlarm {
        key: format!("route_lag:{id}"),
        kind: "route_lag".into(),
        severity: Severity::Warning,
        subject: id.into(),
        text: format!("{id} is {seconds:.0} s behind the newest route table"),
        pile_no: None,
        gun_no: None,
    }
}

impl PlatformWatch {
    /// The changes a report makes (`now_secs`: Unix seconds).
    pub fn observe(&mut self, reply: &PlatformReply, now_secs: i64) -> Vec<Change> {
        let mut changes = Vec::new();
        let edges: HashMap<String, bool> = reply
            .edges
            .iter()
            .map(|m| (m.id.clone(), m.leaving))
            .collect();
        let apps: HashMap<String, bool> = reply
            .apps
            .iter()
            .map(|m| (m.id.clone(), m.leaving))
            .collect();
        for (kind, now) in [("edge", &edges), ("app", &apps)] {
            for id in now.keys() {
                changes.push(Change::Clear(format!("{kind}_gone:{id}")));
            }
        }
        if let Some((old_edges, old_apps)) = &self.previous {
            for (kind, old, now) in [("edge", old_edges, &edges), ("app", old_apps, &apps)] {
                for (id, leaving) in old {
                    if !leaving && !now.contains_key(id) {
                        changes.push(Change::Raise(gone(kind, id)));
                    }
                }
            }
        }
        for lag in &reply.lags {
            if lag.lag_seconds > ROUTE_LAG_SECS {
                changes.push(Change::Raise(route_lag(&lag.id, lag.lag_seconds)));
            } else {
                changes.push(Change::Clear(format!("route_lag:{}", lag.id)));
            }
        }
        let mut certificate = |subject: String, not_after: i64| {
            if not_after <= 0 {
                return;
            }
            let days = (not_after - now_secs) / 86_400;
            if days < CERT_DAYS {
                changes.push(Change::Raise(rules::certificate_expiring(&subject, days)));
            } else {
                changes.push(Change::Clear(rules::certificate_key(&subject)));
            }
        };
        for edge in &reply.edges {
            certificate(format!("edge {}", edge.id), edge.cert_not_after);
        }
        certificate(format!("control {}", reply.replica), reply.cert_not_after);
        self.previous = Some((edges, apps));
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pylon_proto::control::{PlatformMember, SubscriberLag};

    fn member(id: &str, leaving: bool, cert: i64) -> PlatformMember {
        PlatformMember {
            id: id.into(),
            leaving,
            cert_not_after: cert,
        }
    }

    fn raised(changes: &[Change]) -> Vec<String> {
        changes
            .iter()
            .filter_map(|c| match c {
                Change::Raise(r) => Some(r.key.clone()),
                Change::Clear(_) => None,
            })
            .collect()
    }

    #[test]
    fn members_gone_without_leaving_are_alarms_and_clear_when_back() {
        let now = 1_700_000_000;
        let far = now + 365 * 86_400;
        let mut watch = PlatformWatch::default();
        let first = PlatformReply {
            replica: "c1".into(),
            edges: vec![member("e1", false, far), member("e2", true, far)],
            apps: vec![member("a1", false, 0)],
            lags: vec![],
            cert_not_after: 0,
        };
        // The first report has nothing to compare with.
        assert!(raised(&watch.observe(&first, now)).is_empty());
        let second = PlatformReply {
            edges: vec![],
            apps: vec![],
            ..first.clone()
        };
        // e1 vanished while not leaving; e2 had said it was leaving; a1 vanished.
        assert_eq!(
            raised(&watch.observe(&second, now)),
            vec!["edge_gone:e1".to_owned(), "app_gone:a1".to_owned()]
        );
        let back = watch.observe(&first, now);
        assert!(back.contains(&Change::Clear("edge_gone:e1".into())));
        assert!(back.contains(&Change::Clear("app_gone:a1".into())));
    }

    #[test]
    fn lagging_subscribers_and_expiring_certificates() {
        let now = 1_700_000_000;
        let mut watch = PlatformWatch::default();
        let reply = PlatformReply {
            replica: "c1".into(),
            edges: vec![member("e1", false, now + 3 * 86_400)],
            apps: vec![],
            lags: vec![
                SubscriberLag {
                    id: "edge/e1".into(),
                    lag_seconds: 45.0,
                },
                SubscriberLag {
                    id: "edge/e2".into(),
                    lag_seconds: 1.0,
                },
            ],
            cert_not_after: now + 30 * 86_400,
        };
        let changes = watch.observe(&reply, now);
        let keys = raised(&changes);
        assert!(keys.contains(&"route_lag:edge/e1".to_owned()), "{keys:?}");
        assert!(
            keys.contains(&"certificate_expiring:edge e1".to_owned()),
            "{keys:?}"
        );
        assert!(!keys.iter().any(|k| k.contains("control")), "{keys:?}");
        assert!(changes.contains(&Change::Clear("route_lag:edge/e2".into())));
        assert!(changes.contains(&Change::Clear("certificate_expiring:control c1".into())));
    }
}
