"""Writes Pylon's Grafana dashboards (deploy/grafana/dashboards/*.json).

The JSON files are what ships and what the tests check; this script is how they are
made, so that a panel is one line here. After editing: python3 deploy/grafana/dashboards.py
"""
import json
import os

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dashboards")

def target(expr, legend, ref):
    return {"datasource": {"type": "prometheus", "uid": "${datasource}"}, "expr": expr,
            "legendFormat": legend, "refId": ref}

class Dash:
    def __init__(self, uid, title, description, instance_job=None):
        self.uid, self.title, self.description = uid, title, description
        self.panels, self.y, self.x, self.id = [], 0, 0, 1
        self.instance_job = instance_job
    def row(self, title):
        if self.x: self.y += 8; self.x = 0
        self.panels.append({"type": "row", "title": title, "id": self.id, "collapsed": False,
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "panels": []})
        self.id += 1; self.y += 1
    def panel(self, kind, title, exprs, unit="short", w=8, h=8, description=""):
        if self.x + w > 24: self.x = 0; self.y += h
        refs = "ABCDEFGH"
        p = {"type": kind, "title": title, "id": self.id, "description": description,
             "datasource": {"type": "prometheus", "uid": "${datasource}"},
             "gridPos": {"h": h, "w": w, "x": self.x, "y": self.y},
             "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
             "options": {},
             "targets": [target(e, l, refs[i]) for i, (e, l) in enumerate(exprs)]}
        if kind == "timeseries":
            p["fieldConfig"]["defaults"]["custom"] = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10}
            p["options"] = {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}}
        if kind == "stat":
            p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                            "colorMode": "value", "graphMode": "area"}
        self.panels.append(p); self.id += 1
        self.x += w
        if self.x >= 24: self.x = 0; self.y += h
    def ts(self, *a, **k): self.panel("timeseries", *a, **k)
    def stat(self, *a, **k): self.panel("stat", *a, w=k.pop("w", 4), h=k.pop("h", 4), **k)
    def write(self):
        templating = [{"name": "datasource", "type": "datasource", "query": "prometheus",
                       "label": "Prometheus", "current": {}, "hide": 0}]
        if self.instance_job:
            templating.append({"name": "instance", "type": "query", "label": "Instance",
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "query": {"query": f'label_values(up{{job="{self.instance_job}"}}, instance)', "refId": "instance"},
                "definition": f'label_values(up{{job="{self.instance_job}"}}, instance)',
                "includeAll": True, "multi": True, "allValue": ".+", "current": {}, "refresh": 2, "hide": 0})
        d = {"uid": self.uid, "title": self.title, "description": self.description,
             "tags": ["pylon"], "timezone": "", "schemaVersion": 38, "version": 1, "editable": True,
             "refresh": "30s", "time": {"from": "now-6h", "to": "now"},
             "templating": {"list": templating}, "annotations": {"list": []},
             "panels": self.panels}
        with open(os.path.join(OUT, f"{self.uid}.json"), "w") as f:
            json.dump(d, f, indent=2, ensure_ascii=False); f.write("\n")

E = 'job="pylon-edge", instance=~"$instance"'
A = 'job="pylon-app", instance=~"$instance"'
C = 'job="pylon-control", instance=~"$instance"'

# ---------------------------------------------------------------- fleet
d = Dash("pylon-fleet", "Pylon / Fleet", "Every charger at a glance: sessions, logins, heartbeats, business frames, records and orders across all edges and app instances.")
d.row("Chargers")
d.stat("Charger sessions", [('sum(pylon_edge_sessions{job="pylon-edge"})', "sessions")])
d.stat("Over TLS", [('sum(pylon_edge_sessions{job="pylon-edge", transport="tls"})', "tls")])
d.stat("Piles online (app view)", [('sum(pylon_app_piles_online{job="pylon-app"})', "online")])
d.stat("Edges up", [('sum(up{job="pylon-edge"})', "edges")])
d.stat("App instances up", [('sum(up{job="pylon-app"})', "apps")])
d.stat("Heartbeats / min", [('sum(rate(pylon_edge_heartbeats_total{job="pylon-edge"}[5m])) * 60', "per min")])
d.ts("Sessions by transport", [('sum by (transport) (pylon_edge_sessions{job="pylon-edge"})', "{{transport}}")], w=12)
d.ts("Sessions per edge", [('sum by (instance) (pylon_edge_sessions{job="pylon-edge"})', "{{instance}}")], w=12)
d.ts("Logins by result", [('sum by (result) (rate(pylon_edge_logins_total{job="pylon-edge"}[5m]))', "{{result}}")], unit="ops")
d.ts("Connections closed by reason", [('sum by (reason) (rate(pylon_edge_closes_total{job="pylon-edge"}[5m]))', "{{reason}}")], unit="ops")
d.ts("Heartbeat gap (p50, p99)", [
    ('histogram_quantile(0.5, sum by (le) (rate(pylon_edge_heartbeat_gap_seconds_bucket{job="pylon-edge"}[5m])))', "p50"),
    ('histogram_quantile(0.99, sum by (le) (rate(pylon_edge_heartbeat_gap_seconds_bucket{job="pylon-edge"}[5m])))', "p99")], unit="s",
    description="Time between a charger's heartbeats as the edge sees them (10 s expected; three missed close the session).")
d.row("Business")
d.ts("Frames from chargers per minute (top 8 types)", [('topk(8, sum by (frame_type) (rate(pylon_edge_frames_in_total{job="pylon-edge"}[5m]))) * 60', "{{frame_type}}")], unit="short")
d.ts("Transaction records per minute", [('sum by (result) (rate(pylon_app_records_total{job="pylon-app"}[5m])) * 60', "{{result}}")])
d.ts("Orders opened per minute", [('sum by (origin) (rate(pylon_app_orders_total{job="pylon-app"}[5m])) * 60', "{{origin}}")])
d.ts("Record commit time (p50, p99)", [
    ('histogram_quantile(0.5, sum by (le) (rate(pylon_app_confirm_seconds_bucket{job="pylon-app"}[5m])))', "p50"),
    ('histogram_quantile(0.99, sum by (le) (rate(pylon_app_confirm_seconds_bucket{job="pylon-app"}[5m])))', "p99")], unit="s")
d.ts("Commands to piles", [('sum by (command, result) (rate(pylon_app_commands_total{job="pylon-app"}[5m]))', "{{command}} {{result}}")], unit="ops")
d.ts("Charging starts refused", [('sum by (kind) (rate(pylon_app_starts_refused_total{job="pylon-app"}[5m]))', "{{kind}}")], unit="ops")
d.write()

# ---------------------------------------------------------------- edge
d = Dash("pylon-edge", "Pylon / Edge", "One or more edges: connections, TLS, frames, errors, the links to the control plane and the app instances.", instance_job="pylon-edge")
d.row("Sessions")
d.ts("Sessions per executor", [(f'sum by (instance, executor) (pylon_edge_sessions{{{E}}})', "{{instance}} #{{executor}}")], w=12)
d.ts("Connections and sessions", [(f'sum by (transport) (pylon_edge_connections{{{E}}})', "connections {{transport}}"),
                                  (f'sum by (transport) (pylon_edge_sessions{{{E}}})', "sessions {{transport}}")], w=12)
d.ts("Handshakes by result", [(f'sum by (transport, result) (rate(pylon_edge_handshakes_total{{{E}}}[5m]))', "{{transport}} {{result}}")], unit="ops")
d.ts("Closes by reason", [(f'sum by (reason) (rate(pylon_edge_closes_total{{{E}}}[5m]))', "{{reason}}")], unit="ops")
d.ts("Logins by result", [(f'sum by (result) (rate(pylon_edge_logins_total{{{E}}}[5m]))', "{{result}}")], unit="ops")
d.row("Traffic")
d.ts("Bytes in / out", [(f'sum by (transport) (rate(pylon_edge_bytes_in_total{{{E}}}[5m]))', "in {{transport}}"),
                        (f'sum by (transport) (rate(pylon_edge_bytes_out_total{{{E}}}[5m]))', "out {{transport}}")], unit="Bps")
d.ts("Heartbeats answered", [(f'sum by (instance) (rate(pylon_edge_heartbeats_total{{{E}}}[5m]))', "{{instance}}")], unit="ops")
d.ts("Heartbeat gap p99", [(f'histogram_quantile(0.99, sum by (instance, le) (rate(pylon_edge_heartbeat_gap_seconds_bucket{{{E}}}[5m])))', "{{instance}}")], unit="s")
d.ts("Frames out by type (top 8)", [(f'topk(8, sum by (frame_type) (rate(pylon_edge_frames_out_total{{{E}}}[5m])))', "{{frame_type}}")], unit="ops")
d.ts("Downlinks", [(f'sum by (result) (rate(pylon_edge_downlinks_total{{{E}}}[5m]))', "{{result}}")], unit="ops")
d.ts("Malformed input", [(f'sum by (kind) (rate(pylon_edge_decode_errors_total{{{E}}}[5m]))', "{{kind}}"),
                          (f'sum(rate(pylon_edge_crc_swapped_total{{{E}}}[5m]))', "CRC byte-swapped (accepted)")], unit="ops",
     description="Decode errors by kind (bad CRC, length, unknown type...); frames with a byte-swapped CRC are accepted and counted apart.")
d.row("Links")
d.ts("Control plane connected", [(f'pylon_edge_control_connected{{{E}}}', "{{instance}}")], w=6)
d.ts("Route version", [(f'pylon_edge_route_version{{{E}}}', "{{instance}}")], w=6)
d.ts("App streams", [(f'pylon_edge_app_streams{{{E}}}', "{{instance}}")], w=6)
d.ts("Uplink routing", [(f'sum by (kind) (rate(pylon_edge_uplink_routing_total{{{E}}}[5m]))', "{{kind}}")], unit="ops", w=6)
d.write()

# ---------------------------------------------------------------- app
d = Dash("pylon-app", "Pylon / App", "The business service: frames handled, records and their commit time, orders, commands, errors.", instance_job="pylon-app")
d.row("Frames")
d.ts("Business frames by type", [(f'sum by (frame_type) (rate(pylon_app_frames_total{{{A}}}[5m]))', "{{frame_type}}")], unit="ops", w=12)
d.ts("Frames waiting", [(f'pylon_app_uplinks_in_flight{{{A}}}', "{{instance}}")], w=6)
d.ts("Edge streams", [(f'pylon_app_edge_streams{{{A}}}', "{{instance}}")], w=6)
d.ts("Frame errors", [(f'sum by (kind) (rate(pylon_app_frame_errors_total{{{A}}}[5m]))', "{{kind}}")], unit="ops",
     description="Business frames that could not be handled, by kind (no data: none ever failed).")
d.ts("Piles online", [(f'pylon_app_piles_online{{{A}}}', "{{instance}}")])
d.ts("Login verdicts", [(f'sum by (result) (rate(pylon_app_logins_total{{{A}}}[5m]))', "{{result}}")], unit="ops")
d.row("Records and orders")
d.ts("Transaction records", [(f'sum by (result) (rate(pylon_app_records_total{{{A}}}[5m]))', "{{result}}")], unit="ops")
d.ts("Record commit time", [
    (f'histogram_quantile(0.5, sum by (le) (rate(pylon_app_confirm_seconds_bucket{{{A}}}[5m])))', "p50"),
    (f'histogram_quantile(0.99, sum by (le) (rate(pylon_app_confirm_seconds_bucket{{{A}}}[5m])))', "p99")], unit="s")
d.ts("Orders opened", [(f'sum by (origin) (rate(pylon_app_orders_total{{{A}}}[5m]))', "{{origin}}")], unit="ops")
d.ts("Commands", [(f'sum by (command, result) (rate(pylon_app_commands_total{{{A}}}[5m]))', "{{command}} {{result}}")], unit="ops")
d.ts("Starts refused", [(f'sum by (kind) (rate(pylon_app_starts_refused_total{{{A}}}[5m]))', "{{kind}}")], unit="ops")
d.ts("Operator API refusals", [(f'sum by (reason) (rate(pylon_auth_refusals_total{{{A}}}[5m]))', "{{reason}}")], unit="ops",
     description="Calls refused for a missing, unknown or too weak token (no data: none ever was).")
d.write()

# ---------------------------------------------------------------- control
d = Dash("pylon-control", "Pylon / Control plane", "Replicas, leadership, the registry, dispatch, membership and route push.", instance_job="pylon-control")
d.row("Replicas")
d.stat("Replicas up", [('sum(up{job="pylon-control"})', "up")])
d.stat("Leaders", [('sum(pylon_control_is_leader{job="pylon-control"})', "leaders")])
d.stat("Registry up", [('min(pylon_control_registry_up{job="pylon-control"})', "registry")])
d.stat("Edges live", [('max(pylon_control_edges_live{job="pylon-control"})', "edges")])
d.stat("App instances", [('max(pylon_control_apps_live{job="pylon-control"})', "apps")])
d.stat("Shards unowned", [('max(pylon_control_shards_unowned{job="pylon-control"})', "unowned")])
d.ts("Leader changes", [(f'sum by (instance) (increase(pylon_control_leader_changes_total{{{C}}}[1h]))', "{{instance}}")])
d.ts("Edges draining", [(f'max(pylon_control_edges_draining{{{C}}})', "draining")])
d.ts("Registry errors and refused members", [(f'sum by (op) (rate(pylon_control_registry_errors_total{{{C}}}[5m]))', "registry {{op}}"),
                      (f'sum(rate(pylon_control_bad_member_requests_total{{{C}}}[5m]))', "refused member calls")], unit="ops",
     description="Failed registry operations by kind (no data: none ever failed), and member calls refused (bad cluster token, bad id).")
d.row("Dispatch and membership")
d.ts("Dispatch requests", [(f'sum by (result) (rate(pylon_control_dispatch_requests_total{{{C}}}[5m]))', "{{result}}")], unit="ops")
d.ts("Dispatch time (p99)", [(f'histogram_quantile(0.99, sum by (le) (rate(pylon_control_dispatch_seconds_bucket{{{C}}}[5m])))', "p99")], unit="s")
d.ts("Keep-alives", [(f'sum by (result) (rate(pylon_control_keepalives_total{{{C}}}[5m]))', "{{result}}")], unit="ops")
d.ts("Registrations", [(f'sum by (kind) (increase(pylon_control_registrations_total{{{C}}}[1h]))', "{{kind}}")])
d.ts("Operator API", [(f'sum by (result) (rate(pylon_control_admin_requests_total{{{C}}}[5m]))', "{{result}}")], unit="ops")
d.ts("Audit log", [(f'sum(rate(pylon_audit_appended_total{{{C}}}[5m]))', "appended"), (f'max(pylon_audit_backlog{{{C}}})', "waiting")])
d.row("Route push")
d.ts("Route version", [(f'pylon_control_route_version{{{C}}}', "{{instance}}")], w=6)
d.ts("Subscribers", [(f'pylon_control_route_subscribers{{{C}}}', "{{instance}}")], w=6)
d.ts("Slowest subscriber lag", [(f'pylon_control_route_slowest_lag_seconds{{{C}}}', "{{instance}}")], unit="s", w=6)
d.ts("Route table size", [(f'pylon_control_route_snapshot_bytes{{{C}}}', "{{instance}}")], unit="bytes", w=6)
d.ts("Snapshots and deltas sent", [(f'sum(rate(pylon_control_route_snapshots_sent_total{{{C}}}[5m]))', "snapshots"),
                                   (f'sum(rate(pylon_control_route_deltas_sent_total{{{C}}}[5m]))', "deltas")], unit="ops", w=12)
d.ts("Shard moves", [(f'sum(increase(pylon_control_shard_moves_total{{{C}}}[1h]))', "moves")], w=12)
d.write()

# ---------------------------------------------------------------- kernel / eBPF
d = Dash("pylon-kernel", "Pylon / Kernel and eBPF", "What the kernel programs see on the edges' ports: TCP state changes, retransmissions, listener selection, the SYN guard, the XDP spreader and the balancer.", instance_job="pylon-edge")
d.row("TCP (tp_btf, with --ebpf)")
d.ts("TCP state entries", [(f'sum by (state) (rate(pylon_edge_tcp_state_entries{{{E}}}[5m]))', "{{state}}")], unit="ops", w=12)
d.ts("Retransmissions", [(f'sum by (instance) (rate(pylon_edge_tcp_retransmits{{{E}}}[5m]))', "{{instance}}")], unit="ops", w=12)
d.ts("Listener selection (SK_REUSEPORT)", [(f'sum by (transport, outcome) (rate(pylon_edge_ebpf_selections{{{E}}}[5m]))', "{{transport}} {{outcome}}")], unit="ops", w=12)
d.ts("Connections established and closed", [(f'sum by (instance, state) (rate(pylon_edge_tcp_state_entries{{{E}, state=~"established|close"}}[5m]))', "{{instance}} {{state}}")], unit="ops", w=12)
d.row("XDP (with --syn-guard, --xdp-spread, pylon-balancer)")
d.ts("SYN guard verdicts", [(f'sum by (verdict) (rate(pylon_edge_syn_guard{{{E}}}[5m]))', "{{verdict}}")], unit="ops")
d.ts("SYNs spread per CPU", [(f'sum by (cpu) (rate(pylon_edge_xdp_spread_syns{{{E}}}[5m]))', "cpu {{cpu}}")], unit="ops")
d.ts("Balancer", [('sum(rate(pylon_balancer_new_flows_total{job="pylon-balancer"}[5m]))', "new flows"),
                  ('sum(rate(pylon_balancer_forwarded_total{job="pylon-balancer"}[5m]))', "forwarded"),
                  ('sum(rate(pylon_balancer_no_backend_total{job="pylon-balancer"}[5m]))', "no backend")], unit="pps")
d.write()
print("ok")
