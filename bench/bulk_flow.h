// The two ends of one bench bulk flow on any bench::Transport, shared by
// bench bulk (sized transfers, one at a time) and bench fairness (timed
// transfers, several at once): the receiver (BulkReceiver, a Transport
// handler that answers every transfer with its result, bulk_wire.h), the
// sender (SendSized, SendTimed) and what a flow measured (BulkOutcome).
//
// CPU time: each end reads its own thread's CPU clock
// (CLOCK_THREAD_CPUTIME_ID: user and system time of that thread) around the
// transfer: the sender from the first byte sent to the result received, the
// receiver from the connection to its answer, sent back in the result. Work
// the kernel does in softirq context is charged to whichever thread was
// running; on loopback and veth that is mostly the sending thread, for every
// transport alike. A receiver serving several transfers at once on one
// thread reports that thread's time for each.
//
// Usage (a receiver on its own thread, a sender on this one):
//   BulkReceiver receiver(*server, /*verbose=*/false, absl::Seconds(10));
//   PollThread thread(*server, receiver, absl::Milliseconds(50), [&] { receiver.Expire(); });
//   absl::StatusOr<PeerId> peer = client->Connect({server->local_address()}, timeout);
//   absl::StatusOr<BulkOutcome> o = SendSized(*client, *peer, MakePayload(1 << 20, 1), timeout);
//
// Bounds: a BulkReceiver serves at most 64 transfers at once (others are
// closed "busy") and holds a ReceiveState (at most 16 bytes of its own) per
// transfer; it drops a transfer silent for `timeout`. A sender holds at most
// the result's length of its peer's answer.
//
// Threading: a BulkReceiver is called on its transport's polling thread,
// Expire too. SendSized and SendTimed use the transport on the calling
// thread only.
#ifndef UDPMSG_BENCH_BULK_FLOW_H_
#define UDPMSG_BENCH_BULK_FLOW_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "bench/bulk_wire.h"
#include "bench/transport.h"
#include "bench/transports.h"
#include "reliable/connection.h"
#include "udp/resolve.h"
#include "udp/socket_address.h"

namespace udpmsg::bench {

// Bulk transfers use 1200-byte datagrams on both UDP libraries.
inline constexpr size_t kBulkDatagramBytes = 1200;

// "tcp" or "tcp-<cc>".
bool IsTcpTransport(absl::string_view transport);

// The spec of a bulk transport name: "udpmsg" (congestion control `cc`),
// "udpmsg-newreno" and "udpmsg-bbr" (that one), "udpmsg-sealed" (`cc`,
// encrypted), "tcp" (the kernel's default congestion control), "tcp-<cc>"
// (<cc> per socket), "enet".
TransportSpec BulkTransportSpec(absl::string_view transport, reliable::CongestionControl cc,
                                absl::Duration timeout);

// Where a client of the bulk server at `peer` (HOST:PORT) sends on
// `transport`: udpmsg and TCP on PORT, ENet (IPv4) on PORT+1, udpmsg-sealed
// on PORT+2. Errors: ResolveHostPort's; INVALID_ARGUMENT when that port is
// past 65535.
absl::StatusOr<std::vector<udp::SocketAddress>> BulkPeerAddresses(absl::string_view transport,
                                                                  const std::string& peer,
                                                                  udp::AddressFamily family);

// The calling thread's CPU time (user + system).
absl::Duration ThreadCpuTime();

// What one flow measured.
struct BulkOutcome {
  std::string transport;
  std::string loss;        // label
  uint64_t bytes = 0;      // delivered (verified when `verified`)
  bool verified = false;
  double seconds = 0;
  int64_t retransmits = -1;  // -1: unknown
  bool receiver_clock = true;
  double sender_cpu_seconds = -1;    // -1: unknown
  double receiver_cpu_seconds = -1;  // -1: unknown (a receiver without the figure)
  std::string error;
  double mbps() const { return seconds > 0 && verified ? bytes * 8 / seconds / 1e6 : 0; }
  // CPU seconds per 10^9 bytes delivered; -1 when unknown.
  double sender_cpu_per_gb() const { return PerGb(sender_cpu_seconds); }
  double receiver_cpu_per_gb() const { return PerGb(receiver_cpu_seconds); }

 private:
  double PerGb(double cpu) const { return cpu >= 0 && verified && bytes > 0 ? cpu / (bytes / 1e9) : -1; }
};

// The receiving end: one ReceiveState per connection, the result (with this
// thread's CPU time over the transfer) sent back when it is complete.
class BulkReceiver final : public Transport::Handler {
 public:
  // `verbose`: a log line per transfer. `timeout`: a transfer silent this
  // long is dropped.
  BulkReceiver(Transport& transport, bool verbose, absl::Duration timeout)
      : transport_(transport), verbose_(verbose), timeout_(timeout) {}

  void OnConnected(PeerId peer, const std::string& name) override;
  void OnReceived(PeerId peer, absl::string_view bytes) override;
  void OnClosed(PeerId peer, const std::string& reason) override;

  // Answers the timed transfers whose deadline passed, and ends the ones
  // that saw nothing for the timeout (answered ones too: their sender
  // should have closed by then). Call after every poll.
  void Expire();

 private:
  struct Transfer {
    std::string name;
    ReceiveState state;
    absl::Time start;
    absl::Time last_data;
    absl::Duration cpu_start;
    bool answered = false;
  };
  using Map = absl::flat_hash_map<PeerId, Transfer>;

  void Answer(PeerId peer, Transfer& t);
  void Drop(Map::iterator it, const std::string& why);

  Transport& transport_;
  const bool verbose_;
  const absl::Duration timeout_;
  Map transfers_;
};

// Sends `payload` as one sized transfer on the connected `peer` and waits
// for the result. Goodput's interval: first byte sent -> last byte received
// at the receiver (the result's receipt when the receiver's clock does not
// fall in between). Errors: the transport's; DEADLINE_EXCEEDED after
// `timeout` without progress; UNAVAILABLE when the connection closed first;
// DATA_LOSS for a malformed result. A short or corrupt delivery is an
// outcome with verified false and `error` set.
absl::StatusOr<BulkOutcome> SendSized(Transport& t, PeerId peer, const Payload& payload,
                                      absl::Duration timeout);

// Streams `payload` over and over on the connected `peer` as one timed
// transfer of `duration` until the result comes; bytes = what the receiver
// counted within `duration` of its first byte (verified against the
// checksum of that many bytes of the stream), seconds = `duration`. Errors
// as SendSized's.
absl::StatusOr<BulkOutcome> SendTimed(Transport& t, PeerId peer, const Payload& payload,
                                      absl::Duration duration, absl::Duration timeout);

}  // namespace udpmsg::bench

#endif  // UDPMSG_BENCH_BULK_FLOW_H_
