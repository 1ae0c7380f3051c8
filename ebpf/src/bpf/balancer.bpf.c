// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
// Pylon L4 balancer (XDP): TCP to the VIP goes to an edge host chosen by Maglev
// consistent hashing over the live edges; an LRU connection table keeps every flow on
// the edge it started on, so removing or draining an edge moves only new flows.
// Forwarding is direct server return at L2: the frame's MACs are rewritten and it is
// redirected to the edge's interface; the edges hold the VIP on a loopback address.

#include "common.h"

// Must match pylon-ebpf (`balancer.rs`): a prime, the Maglev table size.
#define TABLE_SIZE 65537
#define MAX_BACKENDS 256

struct vip {
	__u32 addr; // network order
	__u16 port; // host order
	__u16 pad;
};

struct backend {
	__u32 ifindex;
	__u8 mac[6];     // the edge's interface
	__u8 src_mac[6]; // ours on that link
	__u32 active;    // takes new flows
};

struct flow {
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vip);
} vips SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct backend);
} backends SEC(".maps");

// Maglev lookup table: slot -> backend index (see pylon-ebpf for how it is built).
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TABLE_SIZE);
	__type(key, __u32);
	__type(value, __u32);
} table SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1 << 20);
	__type(key, struct flow);
	__type(value, __u32);
} flows SEC(".maps");

// [0] new flows placed, [1] packets of known flows, [2] forwarded, [3] no backend.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

static __always_inline void count(__u32 slot)
{
	__u64 *n = bpf_map_lookup_elem(&stats, &slot);
	if (n)
		*n += 1;
}

SEC("xdp")
int balance(struct xdp_md *ctx)
{
	struct iphdr *ip;
	struct tcphdr *tcp = tcp_of(ctx, &ip);
	if (!tcp)
		return XDP_PASS;
	__u32 zero = 0;
	struct vip *vip = bpf_map_lookup_elem(&vips, &zero);
	if (!vip || ip->daddr != vip->addr || bpf_ntohs(tcp->dest) != vip->port)
		return XDP_PASS;

	struct flow key = {
		.saddr = ip->saddr,
		.daddr = ip->daddr,
		.sport = tcp->source,
		.dport = tcp->dest,
	};
	__u32 index;
	int syn = tcp->syn && !tcp->ack;
	__u32 *known = bpf_map_lookup_elem(&flows, &key);
	struct backend *pinned = known ? bpf_map_lookup_elem(&backends, known) : 0;
	// A flow stays on its edge; a new SYN on a reused 4-tuple whose edge left picks again.
	if (known && !(syn && (!pinned || !pinned->active))) {
		index = *known;
		count(1);
	} else {
		__u32 slot = flow_hash(ip, tcp) % TABLE_SIZE;
		__u32 *chosen = bpf_map_lookup_elem(&table, &slot);
		if (!chosen || *chosen >= MAX_BACKENDS) {
			count(3);
			return XDP_PASS;
		}
		index = *chosen;
		// Only a SYN starts a flow: stray packets must not evict real ones.
		if (syn)
			bpf_map_update_elem(&flows, &key, &index, BPF_ANY);
		count(0);
	}
	struct backend *b = bpf_map_lookup_elem(&backends, &index);
	if (!b || b->ifindex == 0) {
		count(3);
		return XDP_PASS;
	}
	struct ethhdr *eth = (void *)(long)ctx->data;
	if ((void *)(eth + 1) > (void *)(long)ctx->data_end)
		return XDP_PASS;
	__builtin_memcpy(eth->h_dest, b->mac, 6);
	__builtin_memcpy(eth->h_source, b->src_mac, 6);
	count(2);
	return bpf_redirect(b->ifindex, 0);
}

char LICENSE[] SEC("license") = "GPL";
