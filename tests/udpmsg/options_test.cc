// HostOptions::Validate and the congestion-controller names of the public API.
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "udpmsg/udpmsg.h"

namespace udpmsg {
namespace {

using ::testing::HasSubstr;

TEST(HostOptionsTest, DefaultsAreValid) {
  EXPECT_TRUE(HostOptions().Validate().ok()) << HostOptions().Validate();
}

TEST(HostOptionsTest, HandshakeBudgetDefaults) {
  const HostOptions o;
  EXPECT_EQ(o.max_unconfirmed_connections, 64u);
  EXPECT_EQ(o.max_connections_per_address, 64u);
  EXPECT_EQ(o.unconfirmed_timeout, absl::Seconds(10));
}

TEST(HostOptionsTest, EdgesOfEveryRangeAreValid) {
  std::vector<std::function<void(HostOptions&)>> edges = {
      [](HostOptions& o) { o.max_connections = 1; },
      [](HostOptions& o) { o.max_connections = 1 << 20; },
      [](HostOptions& o) { o.max_unconfirmed_connections = 1; },
      [](HostOptions& o) { o.max_unconfirmed_connections = 1 << 20; },
      [](HostOptions& o) { o.max_connections_per_address = 1; },
      [](HostOptions& o) { o.max_connections_per_address = 1 << 20; },
      [](HostOptions& o) { o.unconfirmed_timeout = absl::Milliseconds(1); },
      [](HostOptions& o) { o.unconfirmed_timeout = absl::Hours(24); },
      [](HostOptions& o) { o.socket_buffer_bytes = 0; },
      [](HostOptions& o) { o.max_datagram = kMinDatagram; },
      [](HostOptions& o) { o.max_datagram = 65507; },
      [](HostOptions& o) { o.max_message_bytes = 1; },
      [](HostOptions& o) { o.max_message_bytes = 256 << 20; },
      [](HostOptions& o) { o.window = 1; },
      [](HostOptions& o) { o.window = 65536; },
      [](HostOptions& o) { o.max_channels = 65536; },
      [](HostOptions& o) { o.idle_timeout = absl::Hours(24); },
      [](HostOptions& o) { o.keepalive = absl::Milliseconds(1); },
      [](HostOptions& o) { o.max_probes = 100; },
      [](HostOptions& o) { o.max_ack_delay = absl::ZeroDuration(); },
      [](HostOptions& o) { o.initial_rtt = absl::Milliseconds(1); },
      [](HostOptions& o) { o.congestion_control = CongestionControl::kBbr; },
  };
  for (size_t i = 0; i < edges.size(); ++i) {
    HostOptions o;
    edges[i](o);
    EXPECT_TRUE(o.Validate().ok()) << "edge " << i << ": " << o.Validate();
  }
}

struct BadCase {
  const char* what;  // expected in the message: the field, the value and the range
  std::function<void(HostOptions&)> set;
};

TEST(HostOptionsTest, EveryBadValueIsInvalidArgumentNamingFieldAndRange) {
  const BadCase cases[] = {
      {"HostOptions.bind is empty", [](HostOptions& o) { o.bind = SocketAddress(); }},
      {"HostOptions.max_connections 0 outside [1, 1048576]",
       [](HostOptions& o) { o.max_connections = 0; }},
      {"HostOptions.max_connections 1048577 outside [1, 1048576]",
       [](HostOptions& o) { o.max_connections = (1 << 20) + 1; }},
      {"HostOptions.max_unconfirmed_connections 0 outside [1, 1048576]",
       [](HostOptions& o) { o.max_unconfirmed_connections = 0; }},
      {"HostOptions.max_unconfirmed_connections 1048577 outside [1, 1048576]",
       [](HostOptions& o) { o.max_unconfirmed_connections = (1 << 20) + 1; }},
      {"HostOptions.max_connections_per_address 0 outside [1, 1048576]",
       [](HostOptions& o) { o.max_connections_per_address = 0; }},
      {"HostOptions.unconfirmed_timeout 0 outside (0, 24h]",
       [](HostOptions& o) { o.unconfirmed_timeout = absl::ZeroDuration(); }},
      {"HostOptions.socket_buffer_bytes -1 outside [0, 1 GiB]",
       [](HostOptions& o) { o.socket_buffer_bytes = -1; }},
      {"HostOptions.cookie_lifetime 0 outside (0, 1h]",
       [](HostOptions& o) { o.cookie_lifetime = absl::ZeroDuration(); }},
      {"HostOptions.max_datagram 511 outside [512, 65507]",
       [](HostOptions& o) { o.max_datagram = 511; }},
      {"HostOptions.max_datagram 65508 outside [512, 65507]",
       [](HostOptions& o) { o.max_datagram = 65508; }},
      {"HostOptions.max_message_bytes 0 outside [1, 256 MiB]",
       [](HostOptions& o) { o.max_message_bytes = 0; }},
      {"HostOptions.max_message_bytes 268435457 outside [1, 256 MiB]",
       [](HostOptions& o) { o.max_message_bytes = (256 << 20) + 1; }},
      {"HostOptions.window 0 outside [1, 65536]", [](HostOptions& o) { o.window = 0; }},
      {"HostOptions.max_queued_bytes 0 outside [1, 16 GiB]",
       [](HostOptions& o) { o.max_queued_bytes = 0; }},
      {"HostOptions.max_reassembly_bytes 0 outside [1, 16 GiB]",
       [](HostOptions& o) { o.max_reassembly_bytes = 0; }},
      {"HostOptions.max_undelivered_bytes 17179869185 outside [1, 16 GiB]",
       [](HostOptions& o) { o.max_undelivered_bytes = (uint64_t{16} << 30) + 1; }},
      {"HostOptions.max_ack_threshold 1 outside [2, 64]",
       [](HostOptions& o) { o.max_ack_threshold = 1; }},
      {"HostOptions.max_ack_threshold 65 outside [2, 64]",
       [](HostOptions& o) { o.max_ack_threshold = 65; }},
      {"HostOptions.max_channels 0 outside [1, 65536]",
       [](HostOptions& o) { o.max_channels = 0; }},
      {"HostOptions.idle_timeout 0 outside (0, 24h]",
       [](HostOptions& o) { o.idle_timeout = absl::ZeroDuration(); }},
      {"HostOptions.idle_timeout inf outside (0, 24h]",
       [](HostOptions& o) { o.idle_timeout = absl::InfiniteDuration(); }},
      {"HostOptions.keepalive -1s outside (0, 24h]",
       [](HostOptions& o) { o.keepalive = absl::Seconds(-1); }},
      {"HostOptions.handshake_timeout 0 outside (0, 24h]",
       [](HostOptions& o) { o.handshake_timeout = absl::ZeroDuration(); }},
      {"HostOptions.peer_timeout 25h outside (0, 24h]",
       [](HostOptions& o) { o.peer_timeout = absl::Hours(25); }},
      {"HostOptions.reassembly_timeout 0 outside (0, 24h]",
       [](HostOptions& o) { o.reassembly_timeout = absl::ZeroDuration(); }},
      {"HostOptions.max_probes 0 outside [1, 100]", [](HostOptions& o) { o.max_probes = 0; }},
      {"HostOptions.max_ack_delay -1ms outside [0, 1s]",
       [](HostOptions& o) { o.max_ack_delay = absl::Milliseconds(-1); }},
      {"HostOptions.initial_rtt 0 outside [1ms, 1m]",
       [](HostOptions& o) { o.initial_rtt = absl::ZeroDuration(); }},
      {"HostOptions.congestion_control 7 is not a controller (valid: newreno, bbr)",
       [](HostOptions& o) { o.congestion_control = static_cast<CongestionControl>(7); }},
  };
  for (const BadCase& c : cases) {
    HostOptions o;
    c.set(o);
    const absl::Status s = o.Validate();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.what << ": " << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.what));
  }
}

TEST(HostOptionsTest, HostCreateRefusesInvalidOptionsBeforeBinding) {
  HostOptions o;
  o.window = 0;
  absl::StatusOr<Host> host = Host::Create(o);
  ASSERT_FALSE(host.ok());
  EXPECT_EQ(host.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(host.status().message()), HasSubstr("HostOptions.window"));
}

TEST(CongestionControlTest, NamesParseBackAndUnknownNamesAreErrors) {
  for (CongestionControl cc : {CongestionControl::kNewReno, CongestionControl::kBbr}) {
    absl::StatusOr<CongestionControl> parsed = ParseCongestionControl(CongestionControlName(cc));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, cc);
  }
  EXPECT_EQ(CongestionControlName(CongestionControl::kNewReno), "newreno");
  EXPECT_EQ(CongestionControlName(CongestionControl::kBbr), "bbr");
  for (const char* bad : {"", "cubic", "reno", "bbr3"}) {
    absl::StatusOr<CongestionControl> parsed = ParseCongestionControl(bad);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(parsed.status().message()), HasSubstr(bad));
    EXPECT_THAT(std::string(parsed.status().message()), HasSubstr("valid: newreno, bbr"));
  }
}

TEST(DeliveryModeTest, EveryModeHasAName) {
  EXPECT_EQ(DeliveryModeName(DeliveryMode::kUnreliable), "unreliable");
  EXPECT_EQ(DeliveryModeName(DeliveryMode::kUnreliableSequenced), "unreliable-sequenced");
  EXPECT_EQ(DeliveryModeName(DeliveryMode::kReliableUnordered), "reliable-unordered");
  EXPECT_EQ(DeliveryModeName(DeliveryMode::kReliableOrdered), "reliable-ordered");
}

TEST(HostOptionsTest, ServerPinMustBeACanonicalFingerprint) {
  HostOptions o;
  o.server_pin = ServerFingerprint(ServerIdentity::FromSeed(ServerIdentity::Seed{3}));
  EXPECT_TRUE(o.Validate().ok()) << o.Validate();
  for (const std::string& bad : {std::string("udpmsg-id:12"), std::string("abc"),
                                absl::AsciiStrToUpper(*o.server_pin)}) {
    o.server_pin = bad;
    EXPECT_EQ(o.Validate().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(o.Validate().message()), HasSubstr("HostOptions.server_pin")) << bad;
  }
}

}  // namespace
}  // namespace udpmsg
