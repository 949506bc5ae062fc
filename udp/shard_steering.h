// Shard steering: N UDP sockets serving one port (SO_REUSEPORT), and a
// classic BPF program that picks, for every datagram, the socket whose shard
// owns the datagram's connection id.
//
// A sharded server runs one reliable::Endpoint per socket, one thread each.
// Every connection id shard i mints has i in its least significant byte
// (reliable::EndpointOptions::shard_index), and every datagram after the
// handshake carries the receiver's connection id at a fixed place:
//   plain:  byte 0 == 1 (version), byte 1 == 0x09 (protobuf field 1,
//           fixed64), then the id little-endian: its low byte is byte 2;
//   sealed: byte 0 == 2, then the id big-endian: its low byte is byte 8.
// The program (ShardSteeringProgram) returns that byte when it is below the
// shard count, and 0xffffffff for anything else: a hello (connection id 0,
// so field 1 is absent and byte 1 is another tag), a short datagram,
// garbage, or a byte naming no shard. The kernel treats an index at or
// beyond the group's size as "no answer" and falls back to its 4-tuple hash
// (net/core/sock_reuseport.c, run_bpf_filter and reuseport_select_sock), so
// a hello and the hello that returns its cookie (same 4-tuple) reach the same
// shard, and every later datagram reaches the shard that owns the connection
// whatever address it comes from. A load past the end of the datagram ends a
// classic BPF program with 0: a sealed-looking datagram of 3 to 8 bytes goes
// to shard 0, which drops it (garbage either way).
//
// The kernel numbers a reuseport group's sockets in bind order (a closed
// socket's slot is taken by the last one), so BindShardGroup binds shard 0
// first, attaches the program to it (it serves the whole group), and then
// checks the numbering: it sends one probe per shard from a temporary socket
// to the bound address (the loopback address for a wildcard bind) and reads
// each back from the socket it was meant for. A socket of another process
// already in the group (same port, same user, SO_REUSEPORT) breaks the
// numbering: the check fails, the program is detached, and the group works
// by the 4-tuple hash alone (ShardGroup::steered false, steering_error says
// why). So does a kernel without SO_ATTACH_REUSEPORT_CBPF (before 4.5).
//
// Usage:
//   udp::DatagramSocket::Options o;
//   o.non_blocking = true;
//   absl::StatusOr<udp::ShardGroup> group = udp::BindShardGroup(address, o, 4);
//   if (!group.ok()) return group.status();
//   if (!group->steered) LOG(...) << group->steering_error;
//   // group->sockets[i] serves shard i.
//
// Threading: BindShardGroup is thread-safe; the sockets it returns follow
// DatagramSocket's rules.
#ifndef UDPMSG_UDP_SHARD_STEERING_H_
#define UDPMSG_UDP_SHARD_STEERING_H_

#include <linux/filter.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "udp/datagram_socket.h"
#include "udp/socket_address.h"

namespace udpmsg::udp {

// Most shards: the index lives in one byte of the connection id.
inline constexpr int kMaxShards = 256;
// What the steering program returns for "no shard: use the 4-tuple hash".
inline constexpr uint32_t kNoShard = 0xffffffff;

// The byte the steering program reads from a UDP payload: the low byte of
// the receiver's connection id (plain: byte 2 of a datagram starting 0x01
// 0x09, 3 bytes at least; sealed: byte 8 of one starting 0x02, 9 bytes at
// least), or -1 when it carries none (a hello, garbage). The program returns
// it when it is below the shard count. Senders use it to keep a UDP GSO
// train to one shard (reliable::Runtime).
int ShardByteOf(absl::string_view datagram);

// The classic BPF program for `shard_count` shards (in [1, kMaxShards]).
std::vector<sock_filter> ShardSteeringProgram(int shard_count);

// Runs a classic BPF program on `datagram` (a UDP payload) the way the
// kernel runs a reuseport program, for tests and for the probe check:
// loads past the end return 0. Supports the instructions
// ShardSteeringProgram uses (ld len, ldb abs, jeq/jge k, ja, ret a/k);
// INVALID_ARGUMENT for any other, or a jump out of the program.
absl::StatusOr<uint32_t> RunSteeringProgram(absl::Span<const sock_filter> program,
                                            absl::Span<const uint8_t> datagram);

// Attaches `program` to the reuseport group of `socket`
// (SO_ATTACH_REUSEPORT_CBPF): the errno status otherwise ("setsockopt
// SO_ATTACH_REUSEPORT_CBPF: Protocol not available" on old kernels).
absl::Status AttachSteeringProgram(const DatagramSocket& socket,
                                   absl::Span<const sock_filter> program);

struct ShardGroup {
  std::vector<DatagramSocket> sockets;  // sockets[i] serves shard i
  // The program is attached and the probes came back to the right sockets.
  bool steered = false;
  // Why not, when !steered (count > 1); empty otherwise.
  std::string steering_error;
};

// Binds `count` sockets (in [1, kMaxShards]) to `local` with SO_REUSEPORT
// in shard order (port 0: the first picks a free port, the others join it),
// then attaches ShardSteeringProgram and checks the numbering (class
// comment). With count 1, one socket without SO_REUSEPORT and no program.
// Errors: INVALID_ARGUMENT for count out of range; the errno status of a
// failed socket call naming the address ("bind [::]:9000: Address already
// in use": a socket without SO_REUSEPORT holds the port, or one of another
// user). A steering failure is not an error (ShardGroup::steered).
absl::StatusOr<ShardGroup> BindShardGroup(const SocketAddress& local,
                                          const DatagramSocket::Options& options, int count);

}  // namespace udpmsg::udp

#endif  // UDPMSG_UDP_SHARD_STEERING_H_
