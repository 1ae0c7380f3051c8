// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
// Pylon SYN-flood guard (XDP): SYNs to the edge's ports pass only within a per-source
// token bucket, and never from a blocklisted source. Everything else passes untouched.
// Counts what it passed and what it dropped, and why.

#include "common.h"

// Layout shared with pylon-ebpf (`synguard.rs`); sizes are checked there.
struct guard_config {
	__u64 rate_per_sec; // SYNs per second refilled per source (at most 1e9)
	__u64 burst;        // bucket size (at most 1e12)
};

struct bucket {
	__u64 tokens_milli; // tokens x 1000
	__u64 last_ns;
};

enum verdict {
	PASSED = 0,       // a SYN within its source's budget
	DROPPED_RATE = 1, // over the budget
	DROPPED_BLOCKED = 2,
	VERDICTS = 3,
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct guard_config);
} config SEC(".maps");

// Destination ports (host order) the guard watches.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u16);
	__type(value, __u8);
} ports SEC(".maps");

// Sources (IPv4, network order) whose SYNs are always dropped.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u8);
} blocklist SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__type(key, __u32);
	__type(value, struct bucket);
} buckets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VERDICTS);
	__type(key, __u32);
	__type(value, __u64);
} verdicts SEC(".maps");

static __always_inline void count(__u32 verdict)
{
	__u64 *n = bpf_map_lookup_elem(&verdicts, &verdict);
	if (n)
		*n += 1;
}

static __always_inline int within_budget(__u32 source, const struct guard_config *cfg)
{
	__u64 now = bpf_ktime_get_ns();
	__u64 cap = cfg->burst * 1000;
	struct bucket *b = bpf_map_lookup_elem(&buckets, &source);
	if (!b) {
		struct bucket fresh = { .tokens_milli = cap - 1000, .last_ns = now };
		bpf_map_update_elem(&buckets, &source, &fresh, BPF_ANY);
		return cap >= 1000;
	}
	// Refill: rate tokens per second, in thousandths. Another CPU may have moved
	// last_ns past our `now`; and past 10 s any bucket is full anyway, which also keeps
	// the product below 2^64 (rate is at most 1e9, checked by the loader).
	__u64 elapsed = now > b->last_ns ? now - b->last_ns : 0;
	if (elapsed > 10000000000ULL)
		elapsed = 10000000000ULL;
	__u64 refill = elapsed / 1000 * cfg->rate_per_sec / 1000;
	__u64 tokens = b->tokens_milli + refill;
	if (tokens > cap)
		tokens = cap;
	b->last_ns = now;
	if (tokens < 1000) {
		b->tokens_milli = tokens;
		return 0;
	}
	b->tokens_milli = tokens - 1000;
	return 1;
}

SEC("xdp")
int syn_guard(struct xdp_md *ctx)
{
	struct iphdr *ip;
	struct tcphdr *tcp = tcp_of(ctx, &ip);
	if (!tcp || !tcp->syn || tcp->ack)
		return XDP_PASS;
	__u16 port = bpf_ntohs(tcp->dest);
	if (!bpf_map_lookup_elem(&ports, &port))
		return XDP_PASS;
	__u32 source = ip->saddr;
	if (bpf_map_lookup_elem(&blocklist, &source)) {
		count(DROPPED_BLOCKED);
		return XDP_DROP;
	}
	__u32 zero = 0;
	struct guard_config *cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg || cfg->rate_per_sec == 0) {
		count(PASSED);
		return XDP_PASS;
	}
	if (!within_budget(source, cfg)) {
		count(DROPPED_RATE);
		return XDP_DROP;
	}
	count(PASSED);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
