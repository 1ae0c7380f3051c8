//! Tells people about alarms: JSON webhooks (signed with HMAC-SHA256, retried with
//! backoff) and Alertmanager's API (`POST /api/v2/alerts`). Deliveries run on their own
//! tasks from a bounded queue: a slow or dead receiver never holds up the business.

use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use pylon_proto::api::monitor::{Alarm, AlarmState};
use serde::Serialize;
use tokio::sync::{mpsc, Semaphore};

/// The header carrying a webhook body's signature: `t=<unix ms>,v1=<hex HMAC-SHA256 of
/// "<t>.<body>">` with the shared secret (the timestamp lets a receiver refuse replays).
pub const SIGNATURE_HEADER: &str = "x-pylon-signature";

/// Alarms waiting to be sent beyond this are dropped (and counted).
const QUEUE: usize = 10_000;
/// Deliveries in flight at once.
const IN_FLIGHT: usize = 64;

/// Where notifications go.
#[derive(Clone, Default)]
pub struct Targets {
    pub webhooks: Vec<String>,
    /// The HMAC key for webhooks.
    pub secret: Option<Vec<u8>>,
    /// Alertmanager base URLs (`http://127.0.0.1:9093`).
    pub alertmanagers: Vec<String>,
    /// Named in every notification (`app:app-1`).
    pub source: String,
}

impl std::fmt::Debug for Targets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown: Vec<String> = self.webhooks.iter().map(|u| shown_url(u)).collect();
        f.debug_struct("Targets")
            .field("webhooks", &shown)
            .field("secret", &self.secret.as_ref().map(|_| "<hidden>"))
            .field("alertmanagers", &self.alertmanagers)
            .field("source", &self.source)
            .finish()
    }
}

/// A URL as logs show it: no user, password or query (they often carry a token).
pub fn shown_url(url: &str) -> String {
    let without_query = url.split(['?', '#']).next().unwrap_or_default();
    match without_query.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            format!("{scheme}://{host}")
        }
        None => without_query.to_owned(),
    }
}

/// Alertmanager's API for posting alerts, under its base URL.
fn alerts_url(base: &str) -> String {
    format!("{}/api/v2/alerts", base.trim_end_matches('/'))
}

/// What happened to an alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Raised,
    Acknowledged,
    Resolved,
}

/// A webhook's body.
#[derive(Debug, Serialize)]
pub struct WebhookBody<'a> {
    pub event: Event,
    pub source: &'a str,
    pub alarm: &'a Alarm,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct DeliveryLabels {
    /// `webhook` or `alertmanager`.
    pub target: &'static str,
    /// `sent`, `failed` (gave up after retries) or `dropped` (queue full).
    pub result: &'static str,
}

#[derive(Clone)]
pub struct Notifier {
    queue: Option<mpsc::Sender<(Event, Alarm)>>,
    pub deliveries: Family<DeliveryLabels, Counter>,
}

/// Signs a webhook body: the value of [`SIGNATURE_HEADER`].
pub fn sign(secret: &[u8], at_ms: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(at_ms.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("t={at_ms},v1={}", hex::encode(ctx.sign().as_ref()))
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// One alert of Alertmanager's API v2 for an alarm (resolved ones carry `endsAt`).
pub fn alertmanager_alert(alarm: &Alarm, source: &str) -> serde_json::Value {
    let mut labels = serde_json::json!({
        "alertname": format!("Pylon{}", camel(&alarm.kind)),
        "severity": alarm.severity.as_str(),
        "kind": alarm.kind,
        "alarm_id": alarm.id.to_string(),
        "subject": alarm.subject,
        "source": source,
    });
    if let (Some(pile), Some(map)) = (&alarm.pile_no, labels.as_object_mut()) {
        map.insert("pile".into(), pile.clone().into());
        if let Some(gun) = &alarm.gun_no {
            map.insert("gun".into(), gun.clone().into());
        }
    }
    let mut alert = serde_json::json!({
        "labels": labels,
        "annotations": { "summary": alarm.subject, "description": alarm.text },
        "startsAt": rfc3339(alarm.first_at),
    });
    if let (Some(at), Some(map)) = (alarm.resolved_at, alert.as_object_mut()) {
        map.insert("endsAt".into(), rfc3339(at).into());
    }
    alert
}

/// `pile_offline` -> `PileOffline`.
fn camel(kind: &str) -> String {
    kind.split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("sending", &self.queue.is_some())
            .finish()
    }
}

impl Notifier {
    /// Starts the delivery task (none when there is nowhere to send).
    pub fn start(targets: Targets) -> Notifier {
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        if targets.webhooks.is_empty() && targets.alertmanagers.is_empty() {
            return Notifier {
                queue: None,
                deliveries,
            };
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(deliver_all(Arc::new(targets), rx, deliveries.clone()));
        Notifier {
            queue: Some(tx),
            deliveries,
        }
    }

    /// Sends nowhere (tests, or nothing configured).
    pub fn none() -> Notifier {
        Notifier::start(Targets::default())
    }

    pub fn notify(&self, event: Event, alarm: &Alarm) {
        let Some(queue) = &self.queue else { return };
        if queue.try_send((event, alarm.clone())).is_err() {
            self.deliveries
                .get_or_create(&DeliveryLabels {
                    target: "any",
                    result: "dropped",
                })
                .inc();
            tracing::warn!(
                alarm = alarm.id,
                "the alarm notification queue is full: dropped"
            );
        }
    }
}

async fn deliver_all(
    targets: Arc<Targets>,
    mut rx: mpsc::Receiver<(Event, Alarm)>,
    deliveries: Family<DeliveryLabels, Counter>,
) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("cannot build the HTTP client for alarm notifications: {e}");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some((event, alarm)) = rx.recv().await {
        let alarm = Arc::new(alarm);
        for url in &targets.webhooks {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let (client, targets, alarm, url, deliveries) = (
                client.clone(),
                targets.clone(),
                alarm.clone(),
                url.clone(),
                deliveries.clone(),
            );
            tokio::spawn(async move {
                let sent = webhook(&client, &targets, &url, event, &alarm).await;
                count(&deliveries, "webhook", sent, alarm.id, &url);
                drop(permit);
            });
        }
        // Alertmanager learns of raises and resolutions; an acknowledgement is ours.
        if event == Event::Acknowledged && alarm.state != AlarmState::Resolved {
            continue;
        }
        for url in &targets.alertmanagers {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let body = serde_json::Value::Array(vec![alertmanager_alert(&alarm, &targets.source)]);
            let (client, url, deliveries, id) =
                (client.clone(), url.clone(), deliveries.clone(), alarm.id);
            tokio::spawn(async move {
                let sent = post_alerts(&client, &url, &body).await;
                count(&deliveries, "alertmanager", sent, id, &url);
                drop(permit);
            });
        }
    }
}

fn count(
    deliveries: &Family<DeliveryLabels, Counter>,
    target: &'static str,
    sent: Result<(), String>,
    alarm: i64,
    url: &str,
) {
    let result = match sent {
        Ok(()) => "sent",
        Err(e) => {
            let url = shown_url(url);
            tracing::warn!(alarm, target, %url, "alarm notification failed: {e}");
            "failed"
        }
    };
    deliveries
        .get_or_create(&DeliveryLabels { target, result })
        .inc();
}

/// Whether a failed delivery is worth trying again (not a 4xx, bar 408 and 429).
#[derive(Debug)]
struct Failure {
    retry: bool,
    message: String,
}

fn backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(30))
        .with_max_times(8)
        .with_jitter()
}

async fn send(request: reqwest::RequestBuilder) -> Result<(), Failure> {
    match request.send().await {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => {
            let status = response.status();
            Err(Failure {
                retry: status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429,
                message: format!("answered {status}"),
            })
        }
        Err(e) => Err(Failure {
            retry: true,
            message: e.to_string(),
        }),
    }
}

async fn webhook(
    client: &reqwest::Client,
    targets: &Targets,
    url: &str,
    event: Event,
    alarm: &Alarm,
) -> Result<(), String> {
    let body = serde_json::to_vec(&WebhookBody {
        event,
        source: &targets.source,
        alarm,
    })
    .map_err(|e| e.to_string())?;
    (|| async {
        let mut request = client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone());
        if let Some(secret) = &targets.secret {
            let at = crate::clock::now_ms();
            request = request.header(SIGNATURE_HEADER, sign(secret, at, &body));
        }
        send(request).await
    })
    .retry(backoff())
    .when(|f: &Failure| f.retry)
    .await
    .map_err(|f| f.message)
}

async fn post_alerts(
    client: &reqwest::Client,
    base: &str,
    alerts: &serde_json::Value,
) -> Result<(), String> {
    let url = alerts_url(base);
    (|| async { send(client.post(&url).json(alerts)).await })
        .retry(backoff())
        .when(|f: &Failure| f.retry)
        .await
        .map_err(|f| f.message)
}

/// Pushes the active alarms to Alertmanager again (it forgets an alert that is not
/// repeated within its resolve timeout).
pub async fn repeat_active(client: &reqwest::Client, targets: &Targets, active: &[Alarm]) {
    if active.is_empty() {
        return;
    }
    let alerts = serde_json::Value::Array(
        active
            .iter()
            .map(|a| alertmanager_alert(a, &targets.source))
            .collect(),
    );
    for base in &targets.alertmanagers {
        if let Err(e) = send(client.post(alerts_url(base)).json(&alerts)).await {
            let url = shown_url(base);
            tracing::warn!(%url, "cannot repeat the active alarms to Alertmanager: {}", e.message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pylon_proto::api::monitor::Severity;

    fn alarm() -> Alarm {
        Alarm {
            id: 7,
            kind: "gun_fault".into(),
            severity: Severity::Critical,
            pile_no: Some("32010200000001".into()),
            gun_no: Some("1".into()),
            subject: "pile 32010200000001 gun 1".into(),
            text: "hardware fault bit 1".into(),
            state: AlarmState::Resolved,
            count: 1,
            first_at: 1_700_000_000_000,
            last_at: 1_700_000_000_000,
            acked_by: None,
            acked_at: None,
            resolved_by: Some("system".into()),
            resolved_at: Some(1_700_000_060_000),
        }
    }

    #[test]
    fn signatures_cover_the_time_and_the_body() {
        let a = sign(b"secret", 1, b"{}");
        assert!(a.starts_with("t=1,v1="), "{a}");
        assert_eq!(a.len(), "t=1,v1=".len() + 64);
        assert_ne!(a, sign(b"secret", 2, b"{}"));
        assert_ne!(a, sign(b"secret", 1, b"{ }"));
        assert_ne!(a, sign(b"other", 1, b"{}"));
        // RFC 4231 test case 2 shape: the same HMAC any receiver computes.
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"secret");
        let expected = hex::encode(ring::hmac::sign(&key, b"1.{}").as_ref());
        assert_eq!(a, format!("t=1,v1={expected}"));
    }

    #[test]
    fn logs_show_urls_without_their_secrets() {
        assert_eq!(
            shown_url("https://user:pw@hooks.example/x/y?token=abc"),
            "https://hooks.example/x/y"
        );
        assert_eq!(shown_url("http://127.0.0.1:9/h"), "http://127.0.0.1:9/h");
        let targets = Targets {
            webhooks: vec!["https://h.example/?token=abc".into()],
            secret: Some(b"0123456789abcdef".to_vec()),
            ..Targets::default()
        };
        let shown = format!("{targets:?}");
        assert!(!shown.contains("abc") && !shown.contains("0123"), "{shown}");
    }

    #[test]
    fn alerts_name_the_kind_and_end_when_resolved() {
        let alert = alertmanager_alert(&alarm(), "app:app-1");
        assert_eq!(alert["labels"]["alertname"], "PylonGunFault");
        assert_eq!(alert["labels"]["pile"], "32010200000001");
        assert_eq!(alert["labels"]["severity"], "critical");
        assert_eq!(alert["startsAt"], "2023-11-14T22:13:20Z");
        assert_eq!(alert["endsAt"], "2023-11-14T22:14:20Z");
    }
}
