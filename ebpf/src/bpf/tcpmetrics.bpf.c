// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
// Pylon kernel-level TCP metrics (tp_btf): state changes and retransmissions of the
// sockets on the edge's ports, counted per CPU for the edge's /metrics.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

// Just the fields we read; CO-RE finds them in the running kernel's layout.
struct sock_common {
	union {
		struct {
			__u32 skc_daddr;
			__u32 skc_rcv_saddr;
		};
	};
	union {
		unsigned int skc_hash;
	};
	union {
		struct {
			__u16 skc_dport;
			__u16 skc_num;
		};
	};
	struct {
		struct net *net;
	} skc_net;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
} __attribute__((preserve_access_index));

struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct net {
	struct ns_common ns;
} __attribute__((preserve_access_index));

struct sk_buff;

// TCP states are 1..12 (TCP_ESTABLISHED .. TCP_NEW_SYN_RECV); slot 0 counts
// retransmissions.
#define RETRANSMITS 0
#define SLOTS 16

// Local ports (host order) to watch: the edge's listeners.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u16);
	__type(value, __u8);
} ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

// [0]: the edge's network namespace (inode number); 0 watches every namespace.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} netns SEC(".maps");

static __always_inline int watched(const struct sock *sk)
{
	__u16 port = BPF_CORE_READ(sk, __sk_common.skc_num);
	if (!bpf_map_lookup_elem(&ports, &port))
		return 0;
	__u32 zero = 0;
	__u32 *want = bpf_map_lookup_elem(&netns, &zero);
	if (want && *want) {
		__u32 inum = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
		if (inum != *want)
			return 0;
	}
	return 1;
}

static __always_inline void count(__u32 slot)
{
	__u64 *n = bpf_map_lookup_elem(&counters, &slot);
	if (n)
		*n += 1;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_state_change, const struct sock *sk, int oldstate, int newstate)
{
	if (newstate > 0 && newstate < SLOTS && watched(sk))
		count((__u32)newstate);
	return 0;
}

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(on_retransmit, const struct sock *sk, const struct sk_buff *skb)
{
	if (watched(sk))
		count(RETRANSMITS);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
