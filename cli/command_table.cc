#include "cli/command_table.h"

#include <utility>

namespace udpmsg::cli {
namespace {

using Flags = std::vector<FlagUse>;

Flags Join(std::initializer_list<Flags> groups) {
  Flags all;
  for (const Flags& g : groups) all.insert(all.end(), g.begin(), g.end());
  return all;
}

// --ipv4/--ipv6 where a command resolves a HOST.
Flags Family() {
  return {{"ipv4", "", "resolve HOST to IPv4 addresses only", ""},
          {"ipv6", "", "resolve HOST to IPv6 addresses only", ""}};
}

// Encryption and trust: clients (send --reliable, chat join).
Flags ClientSecurity() {
  return {
      {"encrypt", "", "encrypt every datagram (the server must too)", ""},
      {"key_file", "FILE", "a room key (udpmsg keygen): only its holders connect", ""},
      {"server_id", "ID", "the server must prove this identity (udpmsg-id:...); encrypts", ""},
      {"known_hosts", "FILE", "pin the server's identity in FILE, trusting it on first use", ""},
  };
}

// Encryption and identity: servers (recv, chat serve).
Flags ServerSecurity() {
  return {
      {"encrypt", "", "encrypt every datagram (clients must too)", ""},
      {"key_file", "FILE", "a room key (udpmsg keygen): only its holders connect", ""},
      {"identity", "FILE", "prove this identity (udpmsg keygen --identity FILE)", ""},
  };
}

// The impairments of the in-process proxy that bench latency and bulk put
// between their endpoints (the loss comes from --bench_loss).
Flags ImpairmentsBesidesLoss() {
  return {
      {"delay", "D", "one-way delay per direction (20ms)", ""},
      {"jitter", "D", "extra random delay, uniform in [0, D]", ""},
      {"reorder", "R", "probability a packet is held back", ""},
      {"reorder_delay", "D", "how long a reordered packet is held", ""},
      {"dup", "R", "probability a packet is duplicated", ""},
      {"corrupt", "R", "probability 1-3 bits of a packet are flipped", ""},
      {"rate", "BW", "bottleneck rate per direction (20mbit; 0: none)", ""},
      {"queue_limit", "BYTES", "the bottleneck's queue in bytes", ""},
  };
}

FlagUse Format(const char* kinds) { return {"format", "FORMAT", kinds, ""}; }
FlagUse Cc() { return {"cc", "NAME", "udpmsg's congestion controller: newreno or bbr", ""}; }
FlagUse Seed() { return {"seed", "N", "seed for every random choice (a run is reproducible)", ""}; }

// bench latency/bulk/fairness: two hosts.
Flags BenchRoles(const char* server_ports) {
  Flags f = {
      {"bench_role", "ROLE", "local (one process), or server/client on two hosts", ""},
      {"bench_peer", "HOST:PORT", "--bench_role client: the server", ""},
  };
  if (server_ports != nullptr) {
    f.push_back({"port", "P", server_ports, "-"});
    f.push_back({"bind", "ADDR", "--bench_role server: the local address (default ::)", ""});
    f.push_back({"duration", "D", "--bench_role server: exit after D (0: until stopped)", "-"});
  }
  return f;
}

// bench latency and bulk: "bench takes its loss rates from --bench_loss
// (--loss and --burst are impair's)".
const std::vector<std::string> kBenchLossFromBenchLoss = {"loss", "burst"};

std::vector<CommandSpec> Build() {
  std::vector<CommandSpec> c;
  c.push_back({"showip",
               "showip HOST",
               "list the IPv4 and IPv6 addresses HOST resolves to",
               false,
               "",
               {{"", {"showip HOST"}, "the addresses the resolver gives for HOST", Family()}},
               RunShowIp});
  c.push_back({"listen",
               "listen --port P",
               "print each datagram that arrives",
               false,
               "",
               {{"",
                 {"listen --port P [--bind ADDR] [--count N]"},
                 "prints each datagram as FROM: PAYLOAD, control bytes escaped",
                 {
                     {"port", "P", "the UDP port to listen on (0 picks a free one)", "required"},
                     {"bind", "ADDR", "the local address (default ::, IPv4 and IPv6 both)", ""},
                     {"count", "N", "exit after N datagrams (0: run until stopped)", "-"},
                 }}},
               RunListen});
  c.push_back(
      {"send",
       "send HOST:PORT [MSG...]",
       "one datagram per MSG or stdin line; --reliable: a verified transfer",
       false,
       "reliable",
       {{"",
         {"send HOST:PORT [MSG...]"},
         "one plain datagram per MSG, or per line of stdin; no reliability",
         Join({{{"reliable", "", "a reliable, verified transfer instead (send --reliable)", ""}},
               Family()})},
        {"--reliable",
         {"send --reliable HOST:PORT [--file FILE | MSG...]",
          "send --reliable --via RENDEZVOUS:PORT NAME [--file FILE | MSG...]"},
         "sends FILE, the MSGs (a line each) or stdin; exit 0 once the receiver verified it",
         Join({{
                   {"reliable", "", "this mode (required)", ""},
                   {"file", "FILE", "the file to send (- or none: stdin)", ""},
                   {"via", "HOST:PORT", "reach NAME through this rendezvous server (docs/nat.md)",
                    ""},
                   {"via_relay_only", "", "with --via: skip the direct attempt (tests)", ""},
                   {"timeout", "D", "give up when the receiver is silent this long", ""},
                   {"progress", "WHEN", "progress line: auto (stderr is a TTY), on or off", ""},
                   Cc(),
               },
               Family(),
               ClientSecurity()}),
         {"identity"}}},
       RunSend});
  c.push_back(
      {"recv",
       "recv --reliable --port P",
       "receive reliable transfers (send --reliable)",
       false,
       "",
       {{"",
         {"recv --reliable --port P --out FILE|-",
          "recv --reliable --port P --out DIR [--threads N]",
          "recv --reliable --via RENDEZVOUS:PORT --name NAME --out FILE|-|DIR [--port P]"},
         "--out FILE or -: one transfer, then exit; --out DIR: a file per sender until stopped",
         Join(
             {{
                  {"reliable", "", "the reliable layer (required)", ""},
                  {"port", "P", "the UDP port to listen on (0 picks a free one)",
                   "required; 0 with --via"},
                  {"via", "HOST:PORT", "register --name with this rendezvous server", ""},
                  {"name", "NAME", "with --via: the name senders ask for (A-Z a-z 0-9 . _ -)", ""},
                  {"out", "PATH", "FILE, - for stdout, or an existing DIR", "required"},
                  {"bind", "ADDR", "the local address (default ::, IPv4 and IPv6 both)", ""},
                  {"timeout", "D", "give up when the sender is silent this long", ""},
                  {"threads", "N", "--out DIR: shards on the port, 1 to 256 (0: one per CPU)", "-"},
                  {"count", "N", "--out DIR: exit after N transfers (0: run until stopped)", "-"},
                  Cc(),
              },
              ServerSecurity()}),
         {"server_id", "known_hosts"}}},
       RunRecv});
  c.push_back(
      {"chat",
       "chat serve|join",
       "multi-party chat: one server, one join per member",
       true,
       "",
       {{"serve",
         {"chat serve --port P [--max_members N] [--threads N]",
          "chat serve --port P --cluster redis://HOST:PORT/ROOM"},
         "a chat server; one room, one order; runs until SIGINT, SIGTERM or SIGHUP",
         Join({{
                   {"port", "P", "the UDP port to listen on (0 picks a free one)", "required"},
                   {"bind", "ADDR", "the local address (default ::, IPv4 and IPv6 both)", ""},
                   {"ipv4", "", "without --bind: listen on 0.0.0.0 (IPv4 only)", ""},
                   {"max_members", "N", "members in the room at most (1 to 1000000)", ""},
                   {"threads", "N", "shards on the port, 1 to 256 (0: one per CPU)", "-"},
                   {"timeout", "D", "drop a member silent this long (and one slow to join)", ""},
                   {"max_members_per_address", "N", "members per address (IPv4, IPv6 /64) at most",
                    ""},
                   {"line_rate", "X", "lines per second each member may send", ""},
                   {"line_burst", "N", "lines a member may send at once", ""},
                   {"byte_rate", "N", "bytes per second each member may send", ""},
                   {"byte_burst", "N", "bytes a member may send at once", ""},
                   {"flood_tolerance", "N", "refused lines before a flooder is closed", ""},
                   {"max_backlog_bytes", "N", "queued bytes that drop a slow member", ""},
                   {"announce_limit", "N", "announce joins/leaves up to N members (0: never)", ""},
                   {"cluster", "URL", "one room over many servers: redis[s]://[:P@]HOST:PORT/ROOM",
                    "-"},
                   {"cluster_password_file", "FILE", "--cluster: Redis's password from a file",
                    "-"},
                   {"cluster_tls_ca", "FILE", "--cluster rediss://: the CA of Redis's certificate",
                    "-"},
                   {"cluster_tls_cert", "FILE", "--cluster rediss://: a client certificate", "-"},
                   {"cluster_tls_key", "FILE", "--cluster rediss://: its key", "-"},
                   {"cluster_ttl", "D", "--cluster: a server silent this long loses its members",
                    ""},
                   {"cluster_history", "N", "--cluster: recent lines a joining member gets", ""},
               },
               ServerSecurity()}),
         {"server_id", "known_hosts"}},
        {"join",
         {"chat join HOST:PORT [HOST:PORT...] --nick NAME"},
         "joins a room (several HOST:PORT: its servers, in turn); type lines; /help, /quit",
         Join({{
                   {"nick", "NAME", "your nickname, unique in the room", "required"},
                   {"color", "", "colour nicknames on a TTY (--nocolor: never)", ""},
                   {"timeout", "D", "give up when the server is silent this long", ""},
                   {"reconnect", "", "rejoin after a lost connection (=false: exit)", ""},
               },
               Family(),
               ClientSecurity()}),
         {"identity"}}},
       RunChat});
  c.push_back({"tcp",
               "tcp serve|connect",
               "TCP stream sockets, for comparison",
               true,
               "",
               {{"serve",
                 {"tcp serve --port P [--message TEXT] [--count N]"},
                 "greets each client with --message and closes its connection",
                 {
                     {"port", "P", "the TCP port to listen on (0 picks a free one)", "required"},
                     {"bind", "ADDR", "the local address (default ::, IPv4 and IPv6 both)", ""},
                     {"message", "TEXT", "the greeting", ""},
                     {"count", "N", "exit after N clients (0: run until stopped)", "-"},
                 }},
                {"connect",
                 {"tcp connect HOST:PORT"},
                 "connects and copies what the server sends to stdout",
                 Family()}},
               RunTcp});
  c.push_back(
      {"impair",
       "impair --listen P --to H:P",
       "a proxy that loses, delays, reorders, duplicates (--nfqueue: root)",
       false,
       "",
       {{"",
         {"impair --listen P --to HOST:PORT [--loss R] [--delay D] ...",
          "impair --nfqueue N [--loss R] [--delay D] ...   (root: TCP and UDP alike)"},
         "impairs each direction, seeded; prints its counters at exit",
         Join({{
                   {"listen", "P", "the proxy's UDP port, where clients send (0: a free one)", "-"},
                   {"to", "HOST:PORT", "where the proxy forwards to", ""},
                   {"nfqueue", "N", "instead of the proxy: impair NFQUEUE N's packets (root)", "-"},
                   {"bind", "ADDR", "the proxy's local address (default ::)", ""},
                   {"ipv4", "", "IPv4 only (the proxy's socket and --to)", ""},
                   {"ipv6", "", "IPv6 only (the proxy's socket and --to)", ""},
                   {"loss", "R", "loss probability per direction (10% or 0.1)", ""},
                   {"burst", "R", "probability a loss continues into the next packet", ""},
               },
               ImpairmentsBesidesLoss(),
               {
                   Seed(),
                   {"duration", "D", "run for D, print the counters, exit (0: until stopped)", "-"},
                   {"rebind_every", "D",
                    "proxy: every D move each client's mapping to a new port (NAT rebinding)",
                    "-"},
               }})}},
       RunImpair});
  c.push_back({"rendezvous",
               "rendezvous --port P",
               "NAT traversal: introduces send/recv --via peers, relays when needed",
               false,
               "",
               {{"",
                 {"rendezvous --port P [--bind ADDR] [--relay_port P2]"},
                 "registrations and introductions on P (encrypted), a relay on P2; docs/nat.md",
                 {{"port", "P", "the UDP port of the rendezvous server", "required"},
                  {"bind", "ADDR", "the local address (default ::, IPv4 and IPv6 both)", ""},
                  {"relay_port", "P2", "the relay's UDP port (0 picks a free one)", ""},
                  {"max_names", "N", "names registered at most", ""},
                  {"max_names_per_address", "N", "names per client IPv4 address or IPv6 /64", ""},
                  {"max_relays", "N", "relay allocations live at most (0: no relay)", ""},
                  {"relay_budget", "BYTES", "bytes one relay allocation forwards at most", ""},
                  {"relay_rate", "RATE", "rate limit per relay allocation (e.g. 100mbit)", ""},
                  {"relay_idle", "D", "an idle relay allocation ends after D", ""}}}},
               RunRendezvous});
  c.push_back({"keygen",
               "keygen",
               "a room key for --key_file; --identity FILE: a server identity",
               false,
               "",
               {{"",
                 {"keygen > room.key", "keygen --identity FILE"},
                 "prints a random room key; --identity writes a new server identity instead",
                 {{"identity", "FILE",
                   "create a server identity in FILE (mode 0600) and print its fingerprint", ""}}}},
               RunKeygen});
  c.push_back(
      {"bench",
       "bench MODE",
       "rate|latency|bulk|fairness|connections: measure udpmsg",
       true,
       "",
       {{"rate",
         {"bench rate [--bench_messages N]"},
         "messages per second over loopback: raw UDP, udpmsg, TCP, ENet",
         {
             {"bench_messages", "N", "messages per run", ""},
             Cc(),
             Format("output as text, csv or markdown"),
         }},
        {"latency",
         {"bench latency [--bench_rate N] [--bench_duration D] [--bench_loss LIST]"},
         "round-trip times at a fixed ping rate, at each loss rate",
         Join({{
                   {"bench_rate", "N", "pings per second (a fixed schedule)", ""},
                   {"bench_duration", "D", "how long each run lasts", ""},
                   {"bench_loss", "LIST", "loss rates to run", "0,1%,5%"},
                   Cc(),
                   Seed(),
                   Format("output as text, csv or markdown"),
               },
               BenchRoles("--bench_role server: raw UDP and TCP on P, udpmsg on P+1"),
               Family(),
               ImpairmentsBesidesLoss()}),
         kBenchLossFromBenchLoss},
        {"bulk",
         {"bench bulk [--bench_size BYTES] [--bench_loss LIST] [--bench_transports LIST]"},
         "one transfer per transport and loss rate: time, throughput, CPU",
         Join({{
                   {"bench_size", "BYTES", "bytes per transfer", ""},
                   {"bench_loss", "LIST", "loss rates to run", ""},
                   {"bench_transports", "LIST",
                    "udpmsg[-CC], udpmsg-sealed, tcp[-CC], enet", ""},
                   Cc(),
                   Seed(),
                   {"timeout", "D", "give up on a transfer silent this long", ""},
                   Format("output as text, csv or markdown"),
               },
               BenchRoles("--bench_role server: udpmsg, TCP on P, ENet P+1, udpmsg-sealed P+2"),
               Family(),
               ImpairmentsBesidesLoss()}),
         kBenchLossFromBenchLoss},
        {"fairness",
         {"bench fairness [--bench_flows LIST] [--bench_duration D]"},
         "flows at once through one bottleneck: each one's share",
         Join({{
                   {"bench_flows", "LIST", "a transport per flow, repeats allowed", ""},
                   {"bench_duration", "D", "how long the flows run", "30s"},
                   Cc(),
                   Seed(),
                   {"timeout", "D", "give up on a flow silent this long", ""},
                   Format("output as text, csv or markdown"),
               },
               BenchRoles(nullptr),
               Family()}),
         // "takes no --bench_loss" / "no impairment flags: the network
         // applies them".
         {"bench_loss", "loss", "burst", "delay", "jitter", "reorder", "reorder_delay", "dup",
          "corrupt", "rate", "queue_limit"}},
        {"connections",
         {"bench connections [--bench_connections N]"},
         "one chat server under N members: connect times, memory, CPU, deliveries",
         {
             {"bench_connections", "N", "chat members to connect", ""},
             {"bench_threads", "N", "client threads", ""},
             {"bench_per_socket", "N", "connections per client socket (each on a 127.X.Y.Z)", ""},
             {"bench_connect_window", "N", "connection attempts in flight at most", ""},
             {"bench_idle", "D", "how long the members idle", ""},
             {"bench_load", "D", "how long the members send lines", ""},
             {"bench_line_rate", "X", "lines per second into the room, in total", ""},
             {"bench_settle_timeout", "D", "longest wait for every join to reach every member", ""},
             {"timeout", "D", "the members' connection timeout", ""},
             {"bench_server", "HOST:PORT", "an external chat server instead of spawning one", ""},
             {"bench_server_pid", "PID", "--bench_server: its pid here (for its /proc figures)",
              "-"},
             {"bench_server_args", "ARGS", "more flags for the spawned chat serve (\"--a=1 --b\")",
              ""},
             {"bench_server_threads", "N", "--threads for the spawned server (0: its default)",
              "-"},
             Format("output as text, csv, markdown or json"),
         }}},
       RunBench});
  c.push_back({"demo",
               "demo",
               "a self-checking tour on loopback",
               false,
               "",
               {{"",
                 {"demo [--seed N]"},
                 "datagrams, a TCP greeting, and every delivery mode over a lossy link",
                 {{"seed", "N", "seed of the lossy link", ""}}}},
               RunDemo});
  return c;
}

}  // namespace

const std::vector<CommandSpec>& Commands() {
  static const std::vector<CommandSpec>* const commands = new std::vector<CommandSpec>(Build());
  return *commands;
}

const CommandSpec* FindCommand(absl::string_view name) {
  for (const CommandSpec& c : Commands()) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

std::string ModeTitle(const CommandSpec& command, const CommandMode& mode) {
  return mode.name.empty() ? command.name : command.name + " " + mode.name;
}

}  // namespace udpmsg::cli
