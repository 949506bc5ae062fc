#include "cli/flags.h"

#include "absl/flags/flag.h"

ABSL_FLAG(std::string, port, "", "local port to listen on, 0 to 65535 (0 picks a free one)");
ABSL_FLAG(std::string, bind, "",
          "local address to bind (default: \"::\", which serves IPv4 and IPv6)");
ABSL_FLAG(int64_t, count, 0, "exit after this many datagrams or clients (0: run until killed)");
ABSL_FLAG(std::string, message, "Hello, world!", "greeting that `tcp serve` sends each client");
ABSL_FLAG(bool, ipv4, false, "use IPv4 only");
ABSL_FLAG(bool, ipv6, false, "use IPv6 only");

// Reliable transfer (send --reliable / recv --reliable).
ABSL_FLAG(bool, reliable, false, "use the reliable layer (ACKs, retransmission, ordering)");
ABSL_FLAG(std::string, file, "", "file to send (default: stdin)");
ABSL_FLAG(std::string, out, "", "where recv writes the transfer (--out=- for stdout)");
ABSL_FLAG(std::string, timeout, "10s",
          "give up when the peer cannot be reached or stops answering for this long");
ABSL_FLAG(std::string, progress, "auto", "progress bar: auto (when stderr is a TTY), on, off");
ABSL_FLAG(int, threads, 0,
          "servers: shards (threads, one SO_REUSEPORT socket each) serving the port, 1 to 256 "
          "(0: one per CPU); recv --reliable uses them with --out DIRECTORY (one transfer per "
          "connection; --out FILE receives one transfer, on one thread)");

// impair: the impairment proxy.
ABSL_FLAG(std::string, listen, "",
          "impair: local port clients send to, 0 to 65535 (0 picks a free one)");
ABSL_FLAG(std::string, to, "", "impair: HOST:PORT to forward to");
ABSL_FLAG(std::string, loss, "0", "impair: loss probability per direction (\"10%\" or 0.1)");
ABSL_FLAG(std::string, burst, "0",
          "impair: probability a loss continues into the next packet (bursty loss)");
ABSL_FLAG(std::string, delay, "0", "impair: one-way delay per direction (\"20ms\")");
ABSL_FLAG(std::string, jitter, "0", "impair: extra random delay, uniform in [0, jitter]");
ABSL_FLAG(std::string, reorder, "0", "impair: probability a packet is held back");
ABSL_FLAG(std::string, reorder_delay, "10ms", "impair: how long a reordered packet is held");
ABSL_FLAG(std::string, dup, "0", "impair: probability a packet is duplicated");
ABSL_FLAG(std::string, corrupt, "0", "impair: probability 1-3 bits of a packet are flipped");
ABSL_FLAG(std::string, rate, "0", "impair: bottleneck rate per direction (\"20mbit\"; 0 = none)");
ABSL_FLAG(std::string, queue_limit, "65536", "impair: bottleneck queue limit in bytes");
ABSL_FLAG(uint64_t, seed, 1, "seed for every random choice (a run is reproducible)");
ABSL_FLAG(std::string, duration, "0", "run for this long, then print counters and exit (0: until killed)");
ABSL_FLAG(std::string, rebind_every, "0",
          "impair: move every mapping to a new upstream port this often (0: never)");

// chat
ABSL_FLAG(std::string, nick, "", "chat join: your nickname (unique in the room)");
ABSL_FLAG(bool, color, true, "chat: colour nicknames on a TTY");
ABSL_FLAG(int, max_members, 256, "chat serve: members in the room at most (1 to 1000000)");

// bench
ABSL_FLAG(int64_t, bench_messages, 200000, "bench rate: messages per run");
ABSL_FLAG(std::string, bench_size, "16MiB", "bench bulk: bytes per transfer (e.g. 16MiB)");
ABSL_FLAG(std::string, bench_loss, "0,1%,5%,10%", "bench bulk/latency: loss rates to test");
ABSL_FLAG(int, bench_rate, 1000, "bench latency: pings per second (fixed schedule)");
ABSL_FLAG(std::string, bench_duration, "5s", "bench latency: how long each run lasts");
ABSL_FLAG(std::string, cc, "newreno", "congestion controller for udpmsg reliable (newreno, bbr)");
ABSL_FLAG(std::string, format, "text", "bench: output as text, csv or markdown");
ABSL_FLAG(std::string, bench_transports, "udpmsg,tcp,enet",
          "bench bulk: transports to run (comma-separated: udpmsg, tcp, enet, and udpmsg-newreno, "
          "udpmsg-bbr, tcp-cubic, tcp-reno, tcp-bbr with that congestion control, udpmsg-sealed "
          "encrypted)");
ABSL_FLAG(std::string, bench_role, "local",
          "bench bulk/latency: local (all in one process), server (bulk: receivers on --port, "
          "ENet on --port+1; latency: raw UDP and TCP echo on --port, udpmsg on --port+1) or "
          "client (to the server at --bench_peer)");
ABSL_FLAG(std::string, bench_peer, "",
          "bench bulk/latency --bench_role client: the server's HOST:PORT");

// Encryption (send/recv --reliable, chat).
ABSL_FLAG(bool, encrypt, false,
          "encrypt the connection (X25519; AES-256-GCM where both CPUs have it, else "
          "ChaCha20-Poly1305); both sides must say so");
ABSL_FLAG(std::string, key_file, "",
          "a room key file (see `udpmsg keygen`): encrypts, and only peers with the same key "
          "can connect");
ABSL_FLAG(std::string, identity, "",
          "servers (recv, chat serve): the server identity file (see `udpmsg keygen --identity "
          "FILE`): encrypts, and proves to clients that this is the server they pinned; keygen: "
          "the identity file to create");
ABSL_FLAG(std::string, server_id, "",
          "clients (send --reliable, chat join): the server's identity fingerprint "
          "(udpmsg-id:...) it must prove; encrypts; another server is refused");
ABSL_FLAG(std::string, known_hosts, "",
          "clients (send --reliable, chat join): a known-hosts file (HOST:PORT udpmsg-id:... "
          "lines): the server must prove the identity recorded for HOST:PORT; a server not yet "
          "listed is recorded on first connection (trust on first use); encrypts");
// NAT traversal (rendezvous; send/recv --reliable --via).
ABSL_FLAG(std::string, via, "",
          "send/recv --reliable: the rendezvous server HOST:PORT that introduces the peers "
          "(NAT traversal; see docs/nat.md)");
ABSL_FLAG(std::string, name, "", "recv --reliable --via: the name to register with the server");
ABSL_FLAG(bool, via_relay_only, false,
          "send --reliable --via: skip the direct attempt and use the relay (for tests)");
ABSL_FLAG(std::string, relay_port, "0",
          "rendezvous: the relay's UDP port (0 picks a free one; clients learn it)");
ABSL_FLAG(int, max_names, 4096, "rendezvous: names registered at most");
ABSL_FLAG(int, max_names_per_address, 8,
          "rendezvous: names at most per client IPv4 address or IPv6 /64");
ABSL_FLAG(int, max_relays, 64, "rendezvous: relay allocations live at most");
ABSL_FLAG(std::string, relay_budget, "1GiB",
          "rendezvous: bytes one relay allocation forwards at most");
ABSL_FLAG(std::string, relay_rate, "100mbit", "rendezvous: rate limit per relay allocation");
ABSL_FLAG(std::string, relay_idle, "30s",
          "rendezvous: a relay allocation idle this long ends (unbound ones after 20s)");
ABSL_FLAG(int, nfqueue, -1,
          "impair: impair the packets netfilter queues to this NFQUEUE number (root; instead of "
          "--listen/--to; see README)");
