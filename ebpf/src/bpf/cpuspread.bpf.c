// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
// Pylon: spread SYNs over CPUs by a hash of their 4-tuple (XDP + CPUMAP), for NICs that
// spread poorly. The CPU that then processes a SYN is the one whose executor gets the
// connection (see reuseport.bpf.c). Other packets are left where they arrived.

#include "common.h"

#define MAX_CPUS 256

struct {
	__uint(type, BPF_MAP_TYPE_CPUMAP);
	__uint(max_entries, MAX_CPUS);
	__type(key, __u32);
	__type(value, struct bpf_cpumap_val);
} cpus SEC(".maps");

// [0]: how many CPUs to spread over, [1]: the first of them (CPUs first .. first+count).
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
} spread SEC(".maps");

// SYNs sent to each CPU.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_CPUS);
	__type(key, __u32);
	__type(value, __u64);
} sent SEC(".maps");

SEC("xdp")
int spread_syns(struct xdp_md *ctx)
{
	struct iphdr *ip;
	struct tcphdr *tcp = tcp_of(ctx, &ip);
	if (!tcp || !tcp->syn || tcp->ack)
		return XDP_PASS;
	__u32 zero = 0, one = 1;
	__u32 *count = bpf_map_lookup_elem(&spread, &zero);
	__u32 *first = bpf_map_lookup_elem(&spread, &one);
	if (!count || !first || *count == 0 || *count > MAX_CPUS)
		return XDP_PASS;
	__u32 cpu = *first + flow_hash(ip, tcp) % *count;
	if (cpu >= MAX_CPUS)
		return XDP_PASS;
	__u64 *n = bpf_map_lookup_elem(&sent, &cpu);
	if (n)
		*n += 1;
	return bpf_redirect_map(&cpus, cpu, XDP_PASS);
}

char LICENSE[] SEC("license") = "GPL";
