//! Per-packet cost of the XDP programs, measured in the kernel with `BPF_PROG_TEST_RUN`
//! (the program runs `repeat` times on a crafted packet; the kernel reports the mean).

use std::net::Ipv4Addr;
use std::time::Duration;

use aya::programs::{TestRun, TestRunOptions, Xdp};

use crate::EbpfError;

/// An Ethernet + IPv4 + TCP packet (no options, no payload).
pub fn tcp_packet(
    source: Ipv4Addr,
    dest: Ipv4Addr,
    sport: u16,
    dport: u16,
    syn: bool,
    ack: bool,
) -> Vec<u8> {
    let mut p = Vec::with_capacity(54);
    p.extend_from_slice(&[0x02, 0, 0, 0, 0, 1]); // destination MAC
    p.extend_from_slice(&[0x02, 0, 0, 0, 0, 2]); // source MAC
    p.extend_from_slice(&0x0800u16.to_be_bytes());
    let ip_start = p.len();
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&40u16.to_be_bytes()); // total length
    p.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0]); // id, DF, ttl, TCP, checksum
    p.extend_from_slice(&source.octets());
    p.extend_from_slice(&dest.octets());
    let sum = checksum(&p[ip_start..ip_start + 20]);
    p[ip_start + 10..ip_start + 12].copy_from_slice(&sum.to_be_bytes());
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&1u32.to_be_bytes()); // seq
    p.extend_from_slice(&0u32.to_be_bytes()); // ack
    let flags = (0x02 * u8::from(syn)) | (0x10 * u8::from(ack));
    p.extend_from_slice(&[0x50, flags]);
    p.extend_from_slice(&64240u16.to_be_bytes()); // window
    p.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent
    p
}

fn checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

/// Runs `program` on `packet` `repeat` times; returns its verdict and the mean time.
pub fn xdp_cost(program: &Xdp, packet: &[u8], repeat: u32) -> Result<(u32, Duration), EbpfError> {
    let mut out = vec![0u8; packet.len() + 256];
    let result = program.test_run(TestRunOptions {
        data_in: Some(packet),
        data_out: Some(&mut out),
        repeat,
        ..Default::default()
    })?;
    Ok((result.return_value, result.duration))
}
