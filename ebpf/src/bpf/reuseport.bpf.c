// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
// Pylon: hand each new connection to the listener of the executor running on the CPU
// that received the SYN, so a connection is served where its packets are processed.
//
// The edge fills `listeners` (index = CPU) as its executors start. A CPU without a
// listener (or a failed selection) falls back to the kernel's SO_REUSEPORT hash.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define MAX_CPUS 256

struct {
	__uint(type, BPF_MAP_TYPE_REUSEPORT_SOCKARRAY);
	__uint(max_entries, MAX_CPUS);
	__type(key, __u32);
	// A socket fd on update (the kernel accepts 4 or 8 bytes).
	__type(value, __u32);
} listeners SEC(".maps");

// Selections by outcome: 0 chose the CPU's listener, 1 no listener for that CPU
// (kernel hash used instead).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} selections SEC(".maps");

static __always_inline void count(__u32 outcome)
{
	__u64 *n = bpf_map_lookup_elem(&selections, &outcome);
	if (n)
		*n += 1;
}

SEC("sk_reuseport")
int select_by_cpu(struct sk_reuseport_md *ctx)
{
	__u32 cpu = bpf_get_smp_processor_id();
	if (bpf_sk_select_reuseport(ctx, &listeners, &cpu, 0) == 0) {
		count(0);
	} else {
		count(1);
	}
	return SK_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
