// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
// What Pylon's XDP programs share: finding the TCP header of an IPv4 frame, and a hash.

#ifndef PYLON_COMMON_H
#define PYLON_COMMON_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// The IPv4 and TCP headers of `ctx`'s frame, or 0 for anything else (every byte
// returned is within the packet).
static __always_inline struct tcphdr *tcp_of(struct xdp_md *ctx, struct iphdr **ip_out)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return 0;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end || ip->protocol != IPPROTO_TCP || ip->ihl < 5)
		return 0;
	struct tcphdr *tcp = (void *)ip + ip->ihl * 4;
	if ((void *)(tcp + 1) > end)
		return 0;
	*ip_out = ip;
	return tcp;
}

// A 32-bit integer mix (lowbias32): consecutive inputs land far apart.
static __always_inline __u32 mix(__u32 h)
{
	h ^= h >> 16;
	h *= 0x7feb352d;
	h ^= h >> 15;
	h *= 0x846ca68b;
	h ^= h >> 16;
	return h;
}

// The hash of a TCP 4-tuple.
static __always_inline __u32 flow_hash(struct iphdr *ip, struct tcphdr *tcp)
{
	return mix(ip->saddr ^ mix(ip->daddr ^ mix(((__u32)tcp->source << 16) | tcp->dest)));
}

#endif
