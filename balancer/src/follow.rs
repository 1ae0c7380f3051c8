//! Which edges the balancer sends new flows to, from the control plane's route table.

use pylon_proto::routes::RouteTable;
use serde::{Deserialize, Serialize};

use pylon_ebpf::balancer::Backend;

/// How the balancer host reaches one edge (from its configuration file).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeLink {
    /// The edge's id in the control plane.
    pub edge_id: String,
    /// Our interface towards it.
    pub interface: String,
    /// Its MAC address on that link, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(text: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = text.trim().split(':').collect();
    if parts.len() != 6 {
        return Err(format!(
            "{text:?} is not a MAC address (six hex bytes separated by ':')"
        ));
    }
    let mut mac = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        mac[i] =
            u8::from_str_radix(p, 16).map_err(|_| format!("{text:?}: {p:?} is not a hex byte"))?;
    }
    Ok(mac)
}

/// A configured edge with what the kernel needs: resolved once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedLink {
    pub edge_id: String,
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub src_mac: [u8; 6],
}

/// Reads the interface's index and MAC from sysfs.
pub fn resolve(link: &EdgeLink) -> Result<ResolvedLink, String> {
    let dir = format!("/sys/class/net/{}", link.interface);
    let read = |file: &str| {
        std::fs::read_to_string(format!("{dir}/{file}"))
            .map(|s| s.trim().to_owned())
            .map_err(|e| format!("interface {:?} ({dir}/{file}): {e}", link.interface))
    };
    let ifindex = read("ifindex")?
        .parse()
        .map_err(|_| format!("interface {:?}: unreadable ifindex", link.interface))?;
    Ok(ResolvedLink {
        edge_id: link.edge_id.clone(),
        ifindex,
        mac: parse_mac(&link.mac)?,
        src_mac: parse_mac(&read("address")?)?,
    })
}

/// The backends in configuration order (indices stay put, so established flows keep
/// their edge); an edge takes new flows while it is registered and not draining.
pub fn backends(links: &[ResolvedLink], routes: &RouteTable) -> Vec<Backend> {
    links
        .iter()
        .map(|l| Backend {
            name: l.edge_id.clone(),
            ifindex: l.ifindex,
            mac: l.mac,
            src_mac: l.src_mac,
            active: routes.edge(&l.edge_id).is_some_and(|e| !e.draining),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pylon_proto::routes::EdgeRoute;

    fn link(id: &str) -> ResolvedLink {
        ResolvedLink {
            edge_id: id.into(),
            ifindex: 3,
            mac: [2, 0, 0, 0, 0, 1],
            src_mac: [2, 0, 0, 0, 0, 2],
        }
    }

    #[test]
    fn registered_undrained_edges_take_new_flows() {
        let mut routes = RouteTable::empty(4);
        routes.edges = vec![
            EdgeRoute {
                id: "e1".into(),
                tcp_address: "a:1".into(),
                tls_address: String::new(),
                capacity: 1,
                draining: false,
            },
            EdgeRoute {
                id: "e2".into(),
                tcp_address: "a:2".into(),
                tls_address: String::new(),
                capacity: 1,
                draining: true,
            },
        ];
        let b = backends(&[link("e1"), link("e2"), link("e3")], &routes);
        assert_eq!(
            b.iter().map(|b| b.active).collect::<Vec<_>>(),
            [true, false, false]
        );
        assert_eq!(b[1].name, "e2");
    }

    #[test]
    fn macs_are_checked() {
        assert_eq!(parse_mac("02:00:0a:ff:00:01"), Ok([2, 0, 10, 255, 0, 1]));
        assert!(parse_mac("02:00:0a").is_err());
        assert!(parse_mac("zz:00:00:00:00:00").is_err());
    }
}
