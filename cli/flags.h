// Flags shared by several udpmsg subcommands. Defined once here because
// Abseil flags are process-wide; each subcommand reads the ones it documents.
#ifndef UDPMSG_CLI_FLAGS_H_
#define UDPMSG_CLI_FLAGS_H_

#include <cstdint>
#include <string>

#include "absl/flags/declare.h"

ABSL_DECLARE_FLAG(std::string, port);
ABSL_DECLARE_FLAG(std::string, bind);
ABSL_DECLARE_FLAG(int64_t, count);
ABSL_DECLARE_FLAG(int, threads);
ABSL_DECLARE_FLAG(std::string, message);
ABSL_DECLARE_FLAG(bool, ipv4);
ABSL_DECLARE_FLAG(bool, ipv6);


ABSL_DECLARE_FLAG(bool, reliable);
ABSL_DECLARE_FLAG(std::string, file);
ABSL_DECLARE_FLAG(std::string, out);
ABSL_DECLARE_FLAG(std::string, timeout);
ABSL_DECLARE_FLAG(std::string, progress);

ABSL_DECLARE_FLAG(std::string, listen);
ABSL_DECLARE_FLAG(std::string, to);
ABSL_DECLARE_FLAG(std::string, loss);
ABSL_DECLARE_FLAG(std::string, burst);
ABSL_DECLARE_FLAG(std::string, delay);
ABSL_DECLARE_FLAG(std::string, jitter);
ABSL_DECLARE_FLAG(std::string, reorder);
ABSL_DECLARE_FLAG(std::string, reorder_delay);
ABSL_DECLARE_FLAG(std::string, dup);
ABSL_DECLARE_FLAG(std::string, corrupt);
ABSL_DECLARE_FLAG(std::string, rate);
ABSL_DECLARE_FLAG(std::string, queue_limit);
ABSL_DECLARE_FLAG(uint64_t, seed);
ABSL_DECLARE_FLAG(std::string, duration);
ABSL_DECLARE_FLAG(std::string, rebind_every);

ABSL_DECLARE_FLAG(std::string, nick);
ABSL_DECLARE_FLAG(bool, color);
ABSL_DECLARE_FLAG(int, max_members);

ABSL_DECLARE_FLAG(int64_t, bench_messages);
ABSL_DECLARE_FLAG(std::string, bench_size);
ABSL_DECLARE_FLAG(std::string, bench_loss);
ABSL_DECLARE_FLAG(int, bench_rate);
ABSL_DECLARE_FLAG(std::string, bench_duration);
ABSL_DECLARE_FLAG(std::string, cc);
ABSL_DECLARE_FLAG(std::string, format);
ABSL_DECLARE_FLAG(std::string, bench_transports);
ABSL_DECLARE_FLAG(std::string, bench_role);
ABSL_DECLARE_FLAG(std::string, bench_peer);

ABSL_DECLARE_FLAG(bool, encrypt);
ABSL_DECLARE_FLAG(std::string, key_file);
ABSL_DECLARE_FLAG(std::string, identity);
ABSL_DECLARE_FLAG(std::string, server_id);
ABSL_DECLARE_FLAG(std::string, known_hosts);

ABSL_DECLARE_FLAG(int, nfqueue);
ABSL_DECLARE_FLAG(std::string, via);
ABSL_DECLARE_FLAG(std::string, name);
ABSL_DECLARE_FLAG(bool, via_relay_only);
ABSL_DECLARE_FLAG(std::string, relay_port);
ABSL_DECLARE_FLAG(int, max_names);
ABSL_DECLARE_FLAG(int, max_names_per_address);
ABSL_DECLARE_FLAG(int, max_relays);
ABSL_DECLARE_FLAG(std::string, relay_budget);
ABSL_DECLARE_FLAG(std::string, relay_rate);
ABSL_DECLARE_FLAG(std::string, relay_idle);

#endif  // UDPMSG_CLI_FLAGS_H_
