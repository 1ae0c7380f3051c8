//! The edge's Prometheus metrics.
//!
//! Families live in one registry shared by all executors; each executor resolves the
//! label sets it uses on the hot path once, at start, so counting is a relaxed atomic add.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExecTransport {
    pub executor: String,
    pub transport: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransportLabel {
    pub transport: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandshakeLabel {
    pub transport: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FrameTypeLabel {
    pub frame_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EbpfLabel {
    pub transport: String,
    /// `by_cpu` (the SYN's CPU chose) or `fallback` (no listener for that CPU).
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CpuLabel {
    pub cpu: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabel {
    pub verdict: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExecutorLabel {
    pub executor: String,
}

/// Seconds between two heartbeats of one session, as the edge sees them, per executor
/// (each executor observes only its own, so they never contend): chargers send one every
/// 10 s, so the buckets are fine around it.
#[derive(Clone)]
pub struct HeartbeatGaps(pub Family<ExecutorLabel, Histogram, fn() -> Histogram>);

fn heartbeat_gap_histogram() -> Histogram {
    Histogram::new(
        [
            1.0, 2.0, 5.0, 8.0, 9.0, 10.0, 11.0, 12.0, 15.0, 20.0, 30.0, 45.0, 60.0,
        ]
        .into_iter(),
    )
}

impl Default for HeartbeatGaps {
    fn default() -> Self {
        HeartbeatGaps(Family::new_with_constructor(heartbeat_gap_histogram))
    }
}

/// All metric families of one edge process.
#[derive(Clone, Default)]
pub struct EdgeMetrics {
    pub connections: Family<ExecTransport, Gauge>,
    pub sessions: Family<ExecTransport, Gauge>,
    pub handshakes: Family<HandshakeLabel, Counter>,
    pub logins: Family<ResultLabel, Counter>,
    pub closes: Family<ReasonLabel, Counter>,
    pub frames_in: Family<FrameTypeLabel, Counter>,
    pub frames_out: Family<FrameTypeLabel, Counter>,
    pub decode_errors: Family<KindLabel, Counter>,
    /// TLS sessions that failed, by what went wrong (error class or the peer's alert).
    pub tls_errors: Family<KindLabel, Counter>,
    pub heartbeats: Counter,
    /// Seconds between a session's heartbeats.
    pub heartbeat_gap: HeartbeatGaps,
    pub bytes_in: Family<TransportLabel, Counter>,
    pub bytes_out: Family<TransportLabel, Counter>,
    pub crc_swapped: Counter,
    pub uplink_frames: Counter,
    pub downlinks: Family<ResultLabel, Counter>,
    /// 1 while registered with the control plane and subscribed to routes.
    pub control_connected: Gauge,
    /// 1 when the edge runs with a control plane (`--control`).
    pub control_configured: Gauge,
    pub control_errors: Counter,
    pub registrations: Counter,
    pub route_version: Gauge,
    /// Route updates applied, by kind (snapshot, delta) or refused (invalid).
    pub route_updates: Family<KindLabel, Counter>,
    /// Uplink events by what became of them (routed, no_owner_login, no_owner_dropped).
    pub uplink_routing: Family<KindLabel, Counter>,
    /// Business streams open to app instances.
    pub app_streams: Gauge,
    /// The kernel's listener selections (eBPF), by transport and outcome.
    pub ebpf_selections: Family<EbpfLabel, Gauge>,
    /// SYNs to the edge's ports by the guard's verdict (passed, dropped_rate, dropped_blocked).
    pub syn_guard: Family<VerdictLabel, Gauge>,
    /// SYNs the XDP spreader sent to each CPU.
    pub xdp_spread_syns: Family<CpuLabel, Gauge>,
    /// Kernel TCP metrics (tp_btf): entries into each state, and retransmissions.
    pub tcp_state_entries: Family<StateLabel, Gauge>,
    pub tcp_retransmits: Gauge,
    pub app_stream_errors: Counter,
}

impl EdgeMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("pylon_edge");
        r.register(
            "connections",
            "Open charger connections",
            self.connections.clone(),
        );
        r.register(
            "sessions",
            "Logged-in charger sessions",
            self.sessions.clone(),
        );
        r.register(
            "handshakes",
            "Connection set-ups by transport and result",
            self.handshakes.clone(),
        );
        r.register("logins", "Login attempts by result", self.logins.clone());
        r.register(
            "closes",
            "Closed connections by reason",
            self.closes.clone(),
        );
        r.register(
            "tls_errors",
            "Failed TLS sessions by error class or the alert the peer sent",
            self.tls_errors.clone(),
        );
        r.register(
            "frames_in",
            "Frames received by type",
            self.frames_in.clone(),
        );
        r.register("frames_out", "Frames sent by type", self.frames_out.clone());
        r.register(
            "decode_errors",
            "Malformed input by kind",
            self.decode_errors.clone(),
        );
        r.register(
            "heartbeat_gap_seconds",
            "Seconds between two heartbeats of a charger session (10 expected)",
            self.heartbeat_gap.0.clone(),
        );
        r.register(
            "heartbeats",
            "Heartbeats answered by the edge",
            self.heartbeats.clone(),
        );
        r.register(
            "bytes_in",
            "Bytes received from chargers (on the wire)",
            self.bytes_in.clone(),
        );
        r.register(
            "bytes_out",
            "Bytes sent to chargers (on the wire)",
            self.bytes_out.clone(),
        );
        r.register(
            "crc_swapped",
            "Frames whose checksum arrived high byte first (accepted)",
            self.crc_swapped.clone(),
        );
        r.register(
            "uplink_frames",
            "Business frames handed to the uplink",
            self.uplink_frames.clone(),
        );
        r.register(
            "downlinks",
            "Downlink requests by result",
            self.downlinks.clone(),
        );
        r.register(
            "control_configured",
            "1 when this edge runs with a control plane (--control)",
            self.control_configured.clone(),
        );
        r.register(
            "control_connected",
            "1 while registered with the control plane and receiving routes",
            self.control_connected.clone(),
        );
        r.register(
            "control_errors",
            "Failed calls to the control plane",
            self.control_errors.clone(),
        );
        r.register(
            "registrations",
            "Registrations with the control plane",
            self.registrations.clone(),
        );
        r.register(
            "route_version",
            "Version of the route table applied",
            self.route_version.clone(),
        );
        r.register(
            "route_updates",
            "Route updates by kind (snapshot, delta, invalid)",
            self.route_updates.clone(),
        );
        r.register(
            "uplink_routing",
            "Uplink events by outcome (routed, no_owner_login, no_owner_dropped)",
            self.uplink_routing.clone(),
        );
        r.register(
            "app_streams",
            "Business streams open to app instances",
            self.app_streams.clone(),
        );
        r.register(
            "ebpf_selections",
            "New connections placed by the eBPF listener selection, by outcome",
            self.ebpf_selections.clone(),
        );
        r.register(
            "xdp_spread_syns",
            "SYNs the XDP spreader sent to each CPU",
            self.xdp_spread_syns.clone(),
        );
        r.register(
            "tcp_state_entries",
            "Sockets on the edge's ports entering each TCP state (kernel, tp_btf)",
            self.tcp_state_entries.clone(),
        );
        r.register(
            "tcp_retransmits",
            "TCP retransmissions on the edge's ports (kernel, tp_btf)",
            self.tcp_retransmits.clone(),
        );
        r.register(
            "syn_guard",
            "SYNs to the edge's ports by the SYN-flood guard's verdict",
            self.syn_guard.clone(),
        );
        r.register(
            "app_stream_errors",
            "Business streams to app instances that failed",
            self.app_stream_errors.clone(),
        );
    }
}

/// The transports a connection can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Tls,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
}

/// One transport's pre-resolved counters for one executor.
#[derive(Clone)]
pub struct TransportCounters {
    pub connections: Gauge,
    pub sessions: Gauge,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
}

/// Counters one executor touches per frame, resolved once.
#[derive(Clone)]
pub struct ExecutorMetrics {
    pub all: Arc<EdgeMetrics>,
    /// This executor's child of [`EdgeMetrics::heartbeat_gap`].
    pub heartbeat_gap: Histogram,
    pub tcp: TransportCounters,
    pub tls: TransportCounters,
    frames_in: Vec<Counter>,
    frames_out: Vec<Counter>,
}

impl ExecutorMetrics {
    pub fn new(all: Arc<EdgeMetrics>, executor: usize) -> Self {
        let per_transport = |t: Transport| {
            let labels = ExecTransport {
                executor: executor.to_string(),
                transport: t.as_str().into(),
            };
            let tl = TransportLabel {
                transport: t.as_str().into(),
            };
            TransportCounters {
                connections: all.connections.get_or_create(&labels).clone(),
                sessions: all.sessions.get_or_create(&labels).clone(),
                bytes_in: all.bytes_in.get_or_create(&tl).clone(),
                bytes_out: all.bytes_out.get_or_create(&tl).clone(),
            }
        };
        // Only known types get a label of their own; the rest share "other".
        // Known types get a label of their own; anything else shares "other".
        let by_type = |family: &Family<FrameTypeLabel, Counter>| -> Vec<Counter> {
            (0..=255u8)
                .map(|t| {
                    let known = pylon_proto::ykc::frames::FrameType::by_code(t).is_some();
                    let frame_type = if known {
                        format!("{t:#04x}")
                    } else {
                        "other".into()
                    };
                    family.get_or_create(&FrameTypeLabel { frame_type }).clone()
                })
                .collect()
        };
        let (frames_in, frames_out) = (by_type(&all.frames_in), by_type(&all.frames_out));
        let heartbeat_gap = all
            .heartbeat_gap
            .0
            .get_or_create(&ExecutorLabel {
                executor: executor.to_string(),
            })
            .clone();
        ExecutorMetrics {
            heartbeat_gap,
            tcp: per_transport(Transport::Tcp),
            tls: per_transport(Transport::Tls),
            all,
            frames_in,
            frames_out,
        }
    }

    pub fn transport(&self, t: Transport) -> &TransportCounters {
        match t {
            Transport::Tcp => &self.tcp,
            Transport::Tls => &self.tls,
        }
    }

    pub fn frame_in(&self, frame_type: u8) {
        self.frames_in[usize::from(frame_type)].inc();
    }

    pub fn frame_out(&self, frame_type: u8) {
        self.frames_out[usize::from(frame_type)].inc();
    }

    pub fn close(&self, reason: &str) {
        self.all
            .closes
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .inc();
    }

    pub fn decode_error(&self, kind: &str) {
        self.all
            .decode_errors
            .get_or_create(&KindLabel { kind: kind.into() })
            .inc();
    }

    pub fn tls_error(&self, kind: &str) {
        self.all
            .tls_errors
            .get_or_create(&KindLabel { kind: kind.into() })
            .inc();
    }

    pub fn handshake(&self, t: Transport, result: &str) {
        self.all
            .handshakes
            .get_or_create(&HandshakeLabel {
                transport: t.as_str().into(),
                result: result.into(),
            })
            .inc();
    }

    pub fn login(&self, result: &str) {
        self.all
            .logins
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
    }
}
