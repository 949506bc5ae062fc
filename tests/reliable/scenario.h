// Scenario helpers for tests that run reliable::Endpoints in the simulator:
// a client/server Pair joined by an impaired path each way, fixed seeds and
// addresses, and accessors for what the application received.
//
// Not thread-safe (nothing in the simulator is).
#ifndef UDPMSG_TESTS_RELIABLE_SCENARIO_H_
#define UDPMSG_TESTS_RELIABLE_SCENARIO_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "impairment/model.h"
#include "reliable/deterministic_rng.h"
#include "reliable/endpoint.h"
#include "tests/reliable/endpoint_node.h"
#include "tests/sim/simulator.h"
#include "udp/socket_address.h"

namespace udpmsg::testing {

inline const absl::Time kStart = absl::FromUnixSeconds(1'700'000'000);

inline udp::SocketAddress Addr(absl::string_view text) { return *udp::SocketAddress::Parse(text); }

// The payload of message `i` of a run: its size and bytes depend on the seed.
inline std::string Payload(uint64_t seed, uint64_t i, size_t size) {
  reliable::DeterministicRng rng(seed, 1000 + i);
  std::string s(size, '\0');
  for (char& c : s) c = static_cast<char>(rng.Next());
  return s;
}

inline reliable::EndpointOptions ServerOptions(uint64_t seed) {
  reliable::EndpointOptions o;
  o.accept_incoming = true;
  o.seed = seed * 2 + 1;
  o.cookie_secret = reliable::CookieJar::Secret{};
  return o;
}

inline reliable::EndpointOptions ClientOptions(uint64_t seed) {
  reliable::EndpointOptions o;
  o.seed = seed * 2 + 2;
  return o;
}

inline impairment::ImpairmentConfig Lossy(double loss = 0, double reorder = 0, double dup = 0) {
  impairment::ImpairmentConfig c;
  c.delay = absl::Milliseconds(10);
  c.jitter = absl::Milliseconds(2);
  c.loss = loss;
  c.reorder = reorder;
  c.reorder_delay = absl::Milliseconds(15);
  c.duplicate = dup;
  return c;
}

// A server and a client joined by one path each way.
class Pair {
 public:
  Pair(uint64_t seed, const impairment::ImpairmentConfig& link,
       const reliable::EndpointOptions& server_options, const reliable::EndpointOptions& client_options)
      : sim_(seed, kStart),
        server_(kStart, Addr("10.0.0.1:4000"), server_options),
        client_(kStart, Addr("10.0.0.2:5000"), client_options) {
    EXPECT_TRUE(sim_.AddNode(server_.address(), &server_).ok());
    EXPECT_TRUE(sim_.AddNode(client_.address(), &client_).ok());
    SetLinks(link);
  }
  Pair(uint64_t seed, const impairment::ImpairmentConfig& link)
      : Pair(seed, link, ServerOptions(seed), ClientOptions(seed)) {}

  void SetLinks(const impairment::ImpairmentConfig& link) {
    EXPECT_TRUE(sim_.SetLink(server_.address(), client_.address(), link).ok());
    EXPECT_TRUE(sim_.SetLink(client_.address(), server_.address(), link).ok());
  }

  // Connects and runs until both sides are connected; returns the client's
  // connection id.
  reliable::ConnectionId Connect(absl::Duration limit = absl::Seconds(30)) {
    absl::StatusOr<reliable::ConnectionId> id = client_.endpoint().Connect(sim_.now(), server_.address());
    EXPECT_TRUE(id.ok()) << id.status();
    sim_.PollAll();
    const bool ok = sim_.RunUntil(
        [&] {
          return client_.Count(reliable::Event::Type::kConnected) == 1 &&
                 server_.Count(reliable::Event::Type::kConnected) == 1;
        },
        sim_.now() + limit);
    EXPECT_TRUE(ok) << "handshake did not complete";
    return *id;
  }

  reliable::ConnectionId ServerConnection() const {
    const reliable::Event* e = server_.Find(reliable::Event::Type::kConnected);
    return e == nullptr ? 0 : e->connection;
  }

  sim::Simulator& sim() { return sim_; }
  EndpointNode& server() { return server_; }
  EndpointNode& client() { return client_; }

 private:
  sim::Simulator sim_;
  EndpointNode server_;
  EndpointNode client_;
};

// Two logs of datagrams (EndpointNode::set_sent_log) hold the same
// datagrams, or with `sizes_only` (sealed runs: fresh keys each time) the
// same sizes. `what` names the logs in a failure.
inline void ExpectSameDatagrams(const std::vector<std::string>& a,
                                const std::vector<std::string>& b, bool sizes_only = false,
                                const char* what = "datagrams") {
  SCOPED_TRACE(what);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].size(), b[i].size()) << "datagram " << i;
    if (!sizes_only) {
      ASSERT_TRUE(a[i] == b[i]) << "datagram " << i << " differs";
    }
  }
}

inline std::vector<const reliable::Event*> Messages(const EndpointNode& node, uint32_t channel) {
  std::vector<const reliable::Event*> out;
  for (const reliable::Event& e : const_cast<EndpointNode&>(node).events()) {
    if (e.type == reliable::Event::Type::kMessage && e.channel == channel) out.push_back(&e);
  }
  return out;
}

}  // namespace udpmsg::testing

#endif  // UDPMSG_TESTS_RELIABLE_SCENARIO_H_
