#!/usr/bin/env bash
# bench/run.sh: every udpmsg benchmark in one run, on one machine, so the
# ratios compare figures measured side by side:
#   1. rate     `udpmsg bench rate` (64-byte messages, loopback in namespace a)
#   2. latency  `udpmsg bench latency` client in namespace a, echo servers in b,
#               at each of --latency-losses (default 0, 1, 5%)
#   3. bulk     `udpmsg bench bulk` client (sender) in a, receivers in b, at each
#               of --losses (default 0, 1, 5, 10%), udpmsg with each of --ccs
#               (default newreno and bbr, side by side)
#   4. fast     the fast paths: a second veth pair with no rate limit, and
#               loopback inside namespace a, at each of --fast-losses (default
#               0, 1%): goodput and CPU seconds per GB of sender and receiver,
#               udpmsg against TCP CUBIC, TCP BBR and ENet
#   5. fairness `udpmsg bench fairness`: two udpmsg flows and one TCP CUBIC flow
#               at once through a 20 Mbit/s tbf for --fairness-duration (default
#               30 s), once per --fairness-ccs (default newreno, bbr) and per
#               --fairness-bottlenecks (default "router sender"): the tbf of a
#               router namespace between a and b (a shared bottleneck, as on a
#               network), then the tbf on the sender's own egress (ua0, as for
#               bulk), where Linux TCP also meets its own host's queue (see
#               docs/benchmarks.md); each flow's goodput and Jain's index
#   6. connections `udpmsg bench connections` inside namespace a: --connections
#               (default 10000) chat members in one process against a spawned
#               `udpmsg chat serve`, over loopback (each client socket on its
#               own 127.X.Y.Z): connect times, server RSS per connection and
#               CPU idle, then --connections-rate lines/s (default 10) into the
#               room: deliveries/s, server CPU, lost connections, order
#   7. cluster  //bench:cluster_bench inside namespace a: one chat room over 1, 2
#               and 3 servers (RedisRooms in one process) through a redis-server
#               it starts on loopback: lines/s accepted and delivered to every
#               server, order and losses, CPU of redis-server and of the servers;
#               then the latency the Redis hop adds (Say on server A to Read on
#               B, p50/p99) against a LocalRoom's in-process hop (~35 s)
# The namespaces are joined by a veth pair with a tbf rate limit on a's side
# (fairness also through a router namespace with the same tbf on its egress);
# the loss hits ALL packets (TCP's too) in both directions.
#
#   sudo bench/run.sh            16 MiB per transfer at 0, 1, 5, 10% loss
#   sudo bench/run.sh --quick    shorter runs (4 MiB transfers), report-quick.*
#   sudo bench/run.sh --only fast --out /tmp/b    the fast paths alone
#   sudo bench/run.sh --only connections --connections 1000   one server, 1000 members
#   sudo bench/run.sh --only cluster      one room over 1, 2, 3 servers through Redis
#
#   sudo bench/run.sh --delay 50ms   50 ms added RTT (25 ms each way), loss and
#                                    delay by `udpmsg impair --nfqueue`
#
# Writes bench/results/report.md (every table, the targets, machine, load,
# setup commands), report-{rate,latency,bulk,fast,fairness,fairness-tcp}.csv, report-connections.json,
# report-cluster.md and report-bulk.png
# (report-quick* with --quick; a -rtt<D> suffix with --delay, e.g.
# report-rtt50ms.md).
# Needs root, `ip netns`, tc and nft (nftables and gnuplot are installed with
# apt-get when missing). The namespaces are always torn down on exit.
#
# Topology (all on this machine):
#   udpmsg-a (client, senders)  10.77.0.1  ua0 ==veth== ub0  10.77.0.2  udpmsg-b (server)
#   ua0 egress: tbf rate 20mbit burst 32kbit latency 50ms
#   udpmsg-a  10.77.1.1  ua1 ==veth== ub1  10.77.1.2  udpmsg-b   (fast: no tbf)
#   udpmsg-a  127.0.0.1  lo                                      (fast: loopback)
#   udpmsg-a  10.77.2.1  ua2 ==veth== ra 10.77.2.254 udpmsg-r 10.77.3.254 rb ==veth== ub2  10.77.3.2  udpmsg-b
#   rb egress (in udpmsg-r, forwarding): tbf rate 20mbit burst 32kbit latency 50ms   (fairness: router)
#   fast-path loss, always by nft: iifname { ua1, lo } in a, ub1 in b
#   loss, emulator nft (the default without --delay), input hook of both namespaces:
#     iifname <veth> numgen random mod 10000 < BP drop
#   loss and delay, emulator nfqueue (the default with --delay), in both namespaces:
#     iptables -A INPUT -i <veth> -j NFQUEUE --queue-num 0
#     udpmsg impair --nfqueue 0 --loss L --delay D/2 --seed 1 (a) / 2 (b)
#   so TCP, udpmsg and ENet cross the same seeded loss model and the same delay.
#   (iptables-nft's xt NFQUEUE target, because the nft `queue` expression needs
#   CONFIG_NFT_QUEUE, which kernels like this one lack; no netem either.)
set -euo pipefail

usage() {
  cat <<'EOF'
usage: sudo bench/run.sh [--quick] [--only "rate latency bulk fast fairness connections cluster"] [--size SIZE]
                         [--losses "0 1 5 10"] [--latency-losses "0 1 5"] [--rate 20mbit]
                         [--cc newreno|bbr] [--ccs "newreno bbr"] [--delay 10ms] [--bin PATH]
                         [--out DIR] [--timeout 30s] [--emulator nft|nfqueue]
                         [--tcp-cc cubic|bbr|reno] [--transports "udpmsg tcp tcp-cubic tcp-reno enet"]
                         [--fast-size 256MiB] [--fast-losses "0 1"] [--fast-runs 5]
                         [--fast-transports "udpmsg tcp-cubic tcp-bbr enet"]
                         [--fairness-duration 30s] [--fairness-ccs "newreno bbr"]
                         [--fairness-flows udpmsg,udpmsg,tcp-cubic]
                         [--fairness-bottlenecks "router sender"]
                         [--connections 10000] [--connections-rate 10]
                         [--connections-idle 10s] [--connections-load 10s]
                         [--cluster-seconds 5] [--cluster-latency-seconds 3] [--cluster-bin PATH]
  --quick      shorter runs: 4 MiB transfers, 2 s latency runs, 50000-message
               rate runs, 32 MiB fast-path transfers (one run each), 10 s fairness runs,
               1000 connections, 2 s cluster runs; results in DIR/report-quick*
  --only       the benchmarks to run (default "rate latency bulk fast fairness
               connections cluster"; with --delay "rate latency bulk fairness")
  --size       bytes per bulk transfer (default 16MiB)
  --losses     bulk loss rates in percent, space-separated (default "0 1 5 10")
  --latency-losses  latency loss rates in percent (default "0 1 5")
  --transports bulk transports (default "udpmsg tcp tcp-cubic tcp-reno enet": tcp is the
               kernel's default congestion control, tcp-<cc> sets <cc> per socket)
  --rate       tbf rate on the sender's veth and the fairness router (default 20mbit)
  --cc         udpmsg congestion controller of rate, latency and fast (default
               newreno), and of bulk when --ccs is not given
  --ccs        bulk: udpmsg once per congestion controller, rows udpmsg-<cc> side by
               side (default "newreno bbr"; with --cc alone, that one, rows "udpmsg")
  --fast-size  bytes per fast-path transfer (default 256MiB)
  --fast-losses     fast-path loss rates in percent (default "0 1")
  --fast-transports fast-path transports (default "udpmsg tcp-cubic tcp-bbr enet")
  --fast-runs  rounds of the fast paths (default 5): each round runs every transport
               once (in the table's order); tables and targets use each
               transport's median (goodput and CPU), the report shows the range
  --profile, --no-profile  profile one more udpmsg transfer on the clean veth
               for the report (perf, 1 GiB, both ends; bench/profile_window.sh)
               always, or never (default: when its target is missed)
  --fairness-duration  how long the fairness flows run together (default 30s)
  --fairness-ccs    one fairness run per udpmsg congestion controller (default "newreno bbr")
  --fairness-flows  the flows of a fairness run (default udpmsg,udpmsg,tcp-cubic)
  --fairness-bottlenecks  where the flows share the tbf, one run each (default "router
               sender"): router = a namespace forwarding between a and b, the
               target's bottleneck; sender = a's own egress (ua0)
  --connections     bench connections: chat members (default 10000)
  --connections-rate   lines per second into the room, in total (default 10)
  --connections-idle   how long the members idle (default 10s)
  --connections-load   how long they send lines (default 10s)
  --cluster-seconds    cluster: each throughput run, per server count (default 5)
  --cluster-latency-seconds  cluster: each latency run at 1000 lines/s (default 3)
  --cluster-bin  the cluster_bench binary (default: build //bench:cluster_bench -c opt)
  --delay      added round-trip time, D/2 in each direction, by `udpmsg impair
               --nfqueue` in both namespaces (default none: the RTT is then the tbf
               queue's); implies --emulator nfqueue
  --emulator   nft: loss by an nftables numgen rule (default without --delay);
               nfqueue: loss and delay by `udpmsg impair --nfqueue` (needs iptables)
  --bin        the udpmsg binary (default: build //cli:udpmsg with ./bazelw -c opt)
  --out        results directory (default bench/results)
  --timeout    a transfer fails after this long without progress (default 30s)
  --tcp-cc     TCP's congestion control in both namespaces (default: the kernel's)
EOF
}

die() {
  echo "bench/run.sh: $*" >&2
  exit 1
}

ARGS="$*"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
QUICK=0
ONLY=
SIZE=16MiB
LOSSES="0 1 5 10"
LAT_LOSSES="0 1 5"
LAT_DURATION=10s
RATE_MESSAGES=200000
TRANSPORTS="udpmsg tcp tcp-cubic tcp-reno enet"
RATE=20mbit
CC=newreno
CC_GIVEN=0
CCS=
FAST_SIZE=256MiB
FAST_LOSSES="0 1"
FAST_TRANSPORTS="udpmsg tcp-cubic tcp-bbr enet"
FAST_RUNS=5
PROFILE=1
PROFILE_SIZE=1GiB
FAIR_DURATION=30s
FAIR_CCS="newreno bbr"
FAIR_FLOWS=udpmsg,udpmsg,tcp-cubic
FAIR_BOTTLENECKS="router sender"
CONN_N=10000
CONN_RATE=10
CONN_IDLE=10s
CONN_LOAD=10s
CLUSTER_SECONDS=5
CLUSTER_LAT_SECONDS=3
CLUSTER_BIN=
TCP_CC=
BIN=${UDPMSG:-}
OUT=$ROOT/bench/results
TIMEOUT=30s
DELAY=
EMULATOR=
while (($#)); do
  case $1 in
    --quick) QUICK=1; SIZE=4MiB; LAT_DURATION=2s; RATE_MESSAGES=50000; FAST_SIZE=32MiB; FAST_RUNS=1
             PROFILE_SIZE=64MiB; FAIR_DURATION=10s; CONN_N=1000; CLUSTER_SECONDS=2; CLUSTER_LAT_SECONDS=2 ;;
    --only) ONLY=${2:?}; shift ;;
    --size) SIZE=${2:?}; shift ;;
    --losses) LOSSES=${2:?}; shift ;;
    --latency-losses) LAT_LOSSES=${2:?}; shift ;;
    --transports) TRANSPORTS=${2:?}; shift ;;
    --rate) RATE=${2:?}; shift ;;
    --cc) CC=${2:?}; CC_GIVEN=1; shift ;;
    --ccs) CCS=${2:?}; shift ;;
    --fast-size) FAST_SIZE=${2:?}; shift ;;
    --fast-runs) FAST_RUNS=${2:?}; shift ;;
    --no-profile) PROFILE=0 ;;
    --profile) PROFILE=2 ;;
    --fast-losses) FAST_LOSSES=${2:?}; shift ;;
    --fast-transports) FAST_TRANSPORTS=${2:?}; shift ;;
    --fairness-duration) FAIR_DURATION=${2:?}; shift ;;
    --fairness-ccs) FAIR_CCS=${2:?}; shift ;;
    --fairness-flows) FAIR_FLOWS=${2:?}; shift ;;
    --fairness-bottlenecks) FAIR_BOTTLENECKS=${2:?}; shift ;;
    --connections) CONN_N=${2:?}; shift ;;
    --connections-rate) CONN_RATE=${2:?}; shift ;;
    --connections-idle) CONN_IDLE=${2:?}; shift ;;
    --connections-load) CONN_LOAD=${2:?}; shift ;;
    --cluster-seconds) CLUSTER_SECONDS=${2:?}; shift ;;
    --cluster-latency-seconds) CLUSTER_LAT_SECONDS=${2:?}; shift ;;
    --cluster-bin) CLUSTER_BIN=${2:?}; shift ;;
    --tcp-cc) TCP_CC=${2:?}; shift ;;
    --bin) BIN=${2:?}; shift ;;
    --out) OUT=${2:?}; shift ;;
    --timeout) TIMEOUT=${2:?}; shift ;;
    --delay) DELAY=${2:?}; shift ;;
    --emulator) EMULATOR=${2:?}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
  shift
done
if [[ -z $ONLY ]]; then
  ONLY="rate latency bulk fast fairness connections cluster"
  # The fast paths are the unimpaired ones: --delay is for the tbf veth.
  [[ -n $DELAY ]] && ONLY="rate latency bulk fairness"
fi
for b in $ONLY; do
  [[ $b == rate || $b == latency || $b == bulk || $b == fast || $b == fairness ||
     $b == connections || $b == cluster ]] ||
    die "--only: \"$b\" is not rate, latency, bulk, fast, fairness, connections or cluster"
done
if [[ -z $CCS ]]; then
  CCS="newreno bbr"
  ((CC_GIVEN)) && CCS=$CC
fi
for c in $CCS $FAIR_CCS; do
  [[ $c == newreno || $c == bbr ]] || die "--ccs/--fairness-ccs: \"$c\" is not newreno or bbr"
done
[[ -n ${FAIR_BOTTLENECKS// /} ]] || die "--fairness-bottlenecks: name router, sender or both"
FAIR_SEEN=" "
for b in $FAIR_BOTTLENECKS; do
  [[ $b == router || $b == sender ]] || die "--fairness-bottlenecks: \"$b\" is not router or sender"
  [[ $FAIR_SEEN == *" $b "* ]] && die "--fairness-bottlenecks: \"$b\" is named twice"
  FAIR_SEEN+="$b "
done
# The bulk section's transports: "udpmsg" becomes udpmsg-<cc> per --ccs (one
# cc: "udpmsg" run with --cc <cc>).
read -r -a CCS_ARRAY <<<"$CCS"
BULK_CC=$CC
BULK_TRANSPORTS=
for t in $TRANSPORTS; do
  if [[ $t == udpmsg && ${#CCS_ARRAY[@]} -gt 1 ]]; then
    for c in $CCS; do BULK_TRANSPORTS+=" udpmsg-$c"; done
  else
    BULK_TRANSPORTS+=" $t"
  fi
done
BULK_TRANSPORTS=${BULK_TRANSPORTS# }
((${#CCS_ARRAY[@]} == 1)) && BULK_CC=${CCS_ARRAY[0]}
wants() { [[ " $ONLY " == *" $1 "* ]]; }
NAME=report
((QUICK)) && NAME=report-quick
[[ -n $DELAY ]] && NAME=$NAME-rtt$DELAY
[[ -n $TCP_CC ]] && NAME=$NAME-tcp$TCP_CC
if [[ -z $EMULATOR ]]; then
  EMULATOR=nft
  [[ -n $DELAY ]] && EMULATOR=nfqueue
fi
[[ $EMULATOR == nft || $EMULATOR == nfqueue ]] || die "--emulator must be nft or nfqueue"
[[ $EMULATOR == nfqueue || -z $DELAY ]] || die "--delay needs --emulator nfqueue"
# Half the added RTT for each direction, in microseconds.
HALF_DELAY=0us
if [[ -n $DELAY ]]; then
  HALF_DELAY=$(awk -v d="$DELAY" 'BEGIN {
    if (match(d, /^[0-9.]+/) == 0) exit 1
    n = substr(d, 1, RLENGTH); u = substr(d, RLENGTH + 1)
    f = (u == "us") ? 1 : (u == "ms") ? 1000 : (u == "s") ? 1000000 : -1
    if (f < 0) exit 1
    printf "%dus", n * f / 2 + 0.5 }') || die "--delay $DELAY: want a duration like 20ms, 500us or 0.1s"
fi

# --- Preconditions -----------------------------------------------------------
[[ $(id -u) -eq 0 ]] || die "needs root (it creates network namespaces, a tc qdisc and nftables rules); run: sudo $0 $ARGS"
command -v ip >/dev/null || die "needs iproute2's ip (apt-get install iproute2)"
ip netns list >/dev/null 2>&1 || die "\`ip netns\` does not work here (no network namespace support?)"
command -v tc >/dev/null || die "needs tc (apt-get install iproute2)"
command -v nstat >/dev/null || die "needs nstat (apt-get install iproute2)"

apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "$@" >&2 ||
    { apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends "$@" >&2; }
}
command -v nft >/dev/null || apt_install nftables || die "needs nft (apt-get install nftables)"
if [[ $EMULATOR == nfqueue ]]; then
  command -v iptables >/dev/null || apt_install iptables || die "needs iptables for the NFQUEUE rule (apt-get install iptables)"
fi
command -v gnuplot >/dev/null || apt_install gnuplot-nox ||
  echo "bench/run.sh: gnuplot unavailable; no plot" >&2

if [[ -z $BIN ]]; then
  (cd "$ROOT" && ./bazelw build -c opt //cli:udpmsg >&2)
  # Ask Bazel where the binary is: the bazel-bin symlink may point at another
  # output base.
  BIN=$(cd "$ROOT" && ./bazelw info -c opt bazel-bin 2>/dev/null)/cli/udpmsg
fi
[[ -x $BIN ]] || die "no udpmsg binary at $BIN"
BIN=$(readlink -f "$BIN")
if wants cluster; then
  command -v redis-server >/dev/null || apt_install redis-server ||
    die "the cluster section needs redis-server (apt-get install redis-server)"
  if [[ -z $CLUSTER_BIN ]]; then
    (cd "$ROOT" && ./bazelw build -c opt //bench:cluster_bench >&2)
    CLUSTER_BIN=$(cd "$ROOT" && ./bazelw info -c opt bazel-bin 2>/dev/null)/bench/cluster_bench
  fi
  [[ -x $CLUSTER_BIN ]] || die "no cluster_bench binary at $CLUSTER_BIN"
  CLUSTER_BIN=$(readlink -f "$CLUSTER_BIN")
fi

# --- Namespaces, veth, tbf -------------------------------------------------------
NS_A=udpmsg-a
NS_B=udpmsg-b
IP_A=10.77.0.1
IP_B=10.77.0.2
PORT=9000       # bench bulk: udpmsg and TCP on 9000, ENet on 9001
LO_PORT=9200    # bench bulk on loopback in namespace a: 9200, ENet 9201
IP_A1=10.77.1.1 # the fast veth pair (no tbf)
IP_B1=10.77.1.2
NS_R=udpmsg-r   # fairness: the router between a and b, its tbf on rb
IP_A2=10.77.2.1
IP_RA=10.77.2.254
IP_RB=10.77.3.254
IP_B2=10.77.3.2
LAT_PORT=9100   # bench latency: raw UDP and TCP echo on 9100, udpmsg on 9101
WORK=$(mktemp -d /tmp/udpmsg-bench.XXXXXX)
SERVER_PIDS=()
EMU_PIDS=()

stop_emulators() {
  local pid
  for pid in "${EMU_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  EMU_PIDS=()
}

cleanup() {
  local rc=$?
  stop_emulators
  local pid
  for pid in "${SERVER_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  ip netns del "$NS_A" 2>/dev/null || true
  ip netns del "$NS_B" 2>/dev/null || true
  ip netns del "$NS_R" 2>/dev/null || true
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Leftovers of an interrupted run.
ip netns del "$NS_A" 2>/dev/null || true
ip netns del "$NS_B" 2>/dev/null || true
ip netns del "$NS_R" 2>/dev/null || true

COMMANDS=$WORK/commands.txt
run() {  # runs and records a setup command
  echo "$*" >>"$COMMANDS"
  "$@"
}
# veth NS1 DEV1 IP1 NS2 DEV2 IP2: a veth pair between two namespaces, each
# end with its /24 address, both up.
veth() {
  run ip link add "$2" netns "$1" type veth peer name "$5" netns "$4"
  run ip -n "$1" addr add "$3/24" dev "$2"
  run ip -n "$4" addr add "$6/24" dev "$5"
  run ip -n "$1" link set "$2" up
  run ip -n "$4" link set "$5" up
}
run ip netns add "$NS_A"
run ip netns add "$NS_B"
run ip -n "$NS_A" link set lo up
run ip -n "$NS_B" link set lo up
veth "$NS_A" ua0 "$IP_A" "$NS_B" ub0 "$IP_B"
if wants fast; then
  veth "$NS_A" ua1 "$IP_A1" "$NS_B" ub1 "$IP_B1"
fi
wants_router() { wants fairness && [[ " $FAIR_BOTTLENECKS " == *" router "* ]]; }
if wants_router; then
  # A shared bottleneck as on a network: a forwards through r to b, and the
  # tbf is r's egress towards b. No sender sees the queue as its own.
  run ip netns add "$NS_R"
  run ip -n "$NS_R" link set lo up
  veth "$NS_A" ua2 "$IP_A2" "$NS_R" ra "$IP_RA"
  veth "$NS_R" rb "$IP_RB" "$NS_B" ub2 "$IP_B2"
  run ip -n "$NS_A" route add "${IP_B2%.*}.0/24" via "$IP_RA"
  run ip -n "$NS_B" route add "${IP_A2%.*}.0/24" via "$IP_RB"
  run ip netns exec "$NS_R" sysctl -q -w net.ipv4.ip_forward=1
  run ip netns exec "$NS_R" tc qdisc add dev rb root handle 1: tbf rate "$RATE" burst 32kbit latency 50ms
fi
if [[ -n "$TCP_CC" ]]; then  # per-namespace sysctl (Linux >= 4.15)
  run ip netns exec "$NS_A" sysctl -q -w net.ipv4.tcp_congestion_control="$TCP_CC"
  run ip netns exec "$NS_B" sysctl -q -w net.ipv4.tcp_congestion_control="$TCP_CC"
fi
# The bottleneck: the sender's egress. burst 32kbit (4 kB) holds two
# full-size frames; latency 50ms bounds the queue at about 129 kB.
run ip netns exec "$NS_A" tc qdisc add dev ua0 root handle 1: tbf rate "$RATE" burst 32kbit latency 50ms
if [[ $EMULATOR == nfqueue ]]; then
  # Everything arriving on the veth (TCP, UDP, ARP aside) goes to queue 0 of
  # its namespace; without a bound emulator the kernel drops it.
  run ip netns exec "$NS_A" iptables -w -A INPUT -i ua0 -j NFQUEUE --queue-num 0 ||
    die "cannot add the NFQUEUE rule (iptables -j NFQUEUE)"
  run ip netns exec "$NS_B" iptables -w -A INPUT -i ub0 -j NFQUEUE --queue-num 0 ||
    die "cannot add the NFQUEUE rule (iptables -j NFQUEUE)"
  if wants_router; then  # the added RTT on the router's path too
    run ip netns exec "$NS_A" iptables -w -A INPUT -i ua2 -j NFQUEUE --queue-num 0 ||
      die "cannot add the NFQUEUE rule (iptables -j NFQUEUE)"
    run ip netns exec "$NS_B" iptables -w -A INPUT -i ub2 -j NFQUEUE --queue-num 0 ||
      die "cannot add the NFQUEUE rule (iptables -j NFQUEUE)"
  fi
fi
# Loss: one table per namespace, filled per loss rate below.
for ns in "$NS_A" "$NS_B"; do
  run ip netns exec "$ns" nft add table inet udpmsg_bench
  run ip netns exec "$ns" nft add chain inet udpmsg_bench input \
    '{ type filter hook input priority 0; policy accept; }'
done

set_loss() {  # percent, e.g. 5 or 0.5
  if [[ $EMULATOR == nfqueue ]]; then
    set_loss_nfqueue "$1"
    return
  fi
  local bp
  bp=$(awk -v p="$1" 'BEGIN { printf "%d", p * 100 + 0.5 }')
  local pair
  for pair in "$NS_A:ua0" "$NS_B:ub0"; do
    local ns=${pair%%:*} dev=${pair##*:}
    ip netns exec "$ns" nft flush chain inet udpmsg_bench input
    if ((bp > 0)); then
      ip netns exec "$ns" nft add rule inet udpmsg_bench input \
        iifname "$dev" numgen random mod 10000 '<' "$bp" counter drop
    fi
  done
  echo "ip netns exec <ns> nft add rule inet udpmsg_bench input iifname <veth> numgen random mod 10000 < $bp counter drop   # $1% loss" >>"$COMMANDS"
}

# The fast paths' loss, always by nft (a userspace emulator would be the
# bottleneck): in a, what arrives on ua1 or lo (loopback passes lo's input
# once per packet); in b, what arrives on ub1.
set_fast_loss() {  # percent
  local bp
  bp=$(awk -v p="$1" 'BEGIN { printf "%d", p * 100 + 0.5 }')
  ip netns exec "$NS_A" nft flush chain inet udpmsg_bench input
  ip netns exec "$NS_B" nft flush chain inet udpmsg_bench input
  if ((bp > 0)); then
    ip netns exec "$NS_A" nft add rule inet udpmsg_bench input \
      iifname '{ "ua1", "lo" }' numgen random mod 10000 '<' "$bp" counter drop
    ip netns exec "$NS_B" nft add rule inet udpmsg_bench input \
      iifname ub1 numgen random mod 10000 '<' "$bp" counter drop
  fi
  echo "ip netns exec <ns> nft add rule inet udpmsg_bench input iifname <{ua1, lo} in a, ub1 in b> numgen random mod 10000 < $bp counter drop   # fast paths, $1% loss" >>"$COMMANDS"
}

# One emulator per namespace (each impairs the packets arriving there, i.e.
# one direction), restarted per loss rate with the same seeds.
set_loss_nfqueue() {
  stop_emulators
  local ns seed=1 log
  for ns in "$NS_A" "$NS_B"; do
    log=$WORK/emulator-$ns.log
    echo "--- ${1}% loss" >>"$log"
    ip netns exec "$ns" "$BIN" impair --nfqueue 0 --loss "${1}%" --delay "$HALF_DELAY" \
      --seed "$seed" 2>>"$log" &
    EMU_PIDS+=($!)
    seed=$((seed + 1))
  done
  for log in "$WORK"/emulator-*.log; do
    for _ in $(seq 50); do
      [[ $(grep -c "impairing" "$log") -ge $(grep -c "^--- " "$log") ]] && break
      sleep 0.1
    done
    tail -n 1 "$log" | grep -q "impairing" || { cat "$log" >&2; die "the NFQUEUE emulator did not start"; }
  done
  echo "ip netns exec <ns> udpmsg impair --nfqueue 0 --loss ${1}% --delay $HALF_DELAY --seed <1 in a, 2 in b>" >>"$COMMANDS"
}

# After a loss rate: stop the NFQUEUE emulators and show their counters.
stop_emulators_and_report() {
  [[ $EMULATOR == nfqueue ]] || return 0
  stop_emulators
  local ns
  for ns in "$NS_A" "$NS_B"; do
    echo "bench/run.sh: $ns $(tail -n 1 "$WORK/emulator-$ns.log")" >&2
  done
}

# append_rows PART CSV: PART's data rows onto CSV (its header too, the first time).
append_rows() {
  if [[ ! -s $2 ]]; then head -n1 "$1" >"$2"; fi
  tail -n +2 "$1" >>"$2"
}

# --- Servers -----------------------------------------------------------------
# start_server NS LOG READY-PATTERN ARGS...: a server in namespace NS, waited for.
start_server() {
  local ns=$1 log=$2 ready=$3
  shift 3
  ip netns exec "$ns" "$BIN" "$@" 2>"$log" &
  local pid=$!
  SERVER_PIDS+=("$pid")
  for _ in $(seq 100); do
    grep -q "$ready" "$log" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; die "the server ($*) did not start"; }
    sleep 0.1
  done
  die "the server ($*) did not start within 10 s"
}
if wants bulk || wants fast || wants fairness; then
  start_server "$NS_B" "$WORK/bulk-server.log" "enet listening" bench bulk --bench_role server \
    --port "$PORT" --timeout "$TIMEOUT" --cc "$CC" --duration 3h
  BULK_SERVER_PID=${SERVER_PIDS[-1]}
fi
if wants fast; then
  start_server "$NS_A" "$WORK/bulk-lo-server.log" "enet listening" bench bulk --bench_role server \
    --bind 127.0.0.1 --port "$LO_PORT" --timeout "$TIMEOUT" --cc "$CC" --duration 3h
fi
if wants latency; then
  start_server "$NS_B" "$WORK/latency-server.log" "udpmsg echo on" bench latency --bench_role server \
    --port "$LAT_PORT" --cc "$CC" --duration 3h
fi

START_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
START_DATE=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
FAILED=0

# --- 1. Message rate -----------------------------------------------------------
RATE_MD=$WORK/rate.md
if wants rate; then
  echo "bench/run.sh: bench rate, $RATE_MESSAGES messages per run ..." >&2
  ip netns exec "$NS_A" "$BIN" bench rate --bench_messages "$RATE_MESSAGES" --cc "$CC" \
    --format markdown >"$RATE_MD" || { echo "bench/run.sh: bench rate failed" >&2; FAILED=1; }
  # The CSV for the target line comes from the same table.
  awk -F'|' '/^\| / && !/^\|---/ { line = ""; for (i = 2; i < NF; i++) { gsub(/^ +| +$/, "", $i); line = line (i > 2 ? "," : "") $i }; print line }' \
    "$RATE_MD" >"$WORK/rate.csv"
fi

# --- 2. Latency ------------------------------------------------------------------
LAT_CSV=$WORK/latency.csv
: >"$LAT_CSV"
if wants latency; then
  for loss in $LAT_LOSSES; do
    set_loss "$loss"
    echo "bench/run.sh: bench latency at ${loss}% loss ($LAT_DURATION per transport) ..." >&2
    part=$WORK/part.csv
    if ! ip netns exec "$NS_A" "$BIN" bench latency --bench_role client \
        --bench_peer "$IP_B:$LAT_PORT" --bench_duration "$LAT_DURATION" --bench_loss "${loss}%" \
        --cc "$CC" --format csv >"$part" 2> >(tee -a "$WORK/latency-client.log" >&2); then
      echo "bench/run.sh: bench latency failed at ${loss}% loss" >&2
      FAILED=1
    fi
    stop_emulators_and_report
    append_rows "$part" "$LAT_CSV"
  done
fi

# --- 3. Bulk goodput ---------------------------------------------------------------
# One `bench bulk` client run from namespace a into $part:
#   bulk_client PEER SIZE LOSS CC TRANSPORTS LOG
# Returns non-zero when a transfer failed (its rows say verified=no).
bulk_client() {
  ip netns exec "$NS_A" "$BIN" bench bulk --bench_role client \
    --bench_peer "$1" --bench_size "$2" --bench_loss "$3%" --cc "$4" \
    --bench_transports "${5// /,}" --timeout "$TIMEOUT" --format csv \
    >"$part" 2> >(tee -a "$6" >&2)
}
CSV=$WORK/bulk.csv
: >"$CSV"
if wants bulk; then
  for loss in $LOSSES; do
    set_loss "$loss"
    echo "bench/run.sh: bench bulk, $SIZE per transfer at ${loss}% loss ..." >&2
    part=$WORK/part.csv
    if ! bulk_client "$IP_B:$PORT" "$SIZE" "$loss" "$BULK_CC" "$BULK_TRANSPORTS" \
        "$WORK/bulk-client.log"; then
      echo "bench/run.sh: some transfers failed at ${loss}% loss (rows marked verified=no)" >&2
      FAILED=1
    fi
    stop_emulators_and_report
    append_rows "$part" "$CSV"
  done
fi

# --- 4. Fast paths ------------------------------------------------------------------
# Rows of bench bulk's CSV with a leading path column (veth, loopback).
# Every fast-path transfer goes to FAST_RUNS_CSV; FAST_CSV holds one row per
# path, transport and loss: the median of its runs (see fast_medians).
FAST_RUNS_CSV=$WORK/fast-runs.csv
FAST_CSV=$WORK/fast.csv
PROFILE_MD=$WORK/profile.md
: >"$PROFILE_MD"
: >"$FAST_RUNS_CSV"
: >"$FAST_CSV"
# fast_medians RUNS-CSV: per path, transport and loss, the median goodput,
# seconds, MB/s, retransmits and sender and receiver CPU of its runs (each
# column's own median), verified only when every run was, and three more
# columns: runs, min and max Mbit/s. On these shared 2-CPU machines one
# transfer of a fast path varies by 10-25% from the next (TCP too).
fast_medians() {
  awk -F, -v OFS=, '
    function median(list,   n, a, i, j, x) {
      n = split(list, a, " ")
      for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > x + 0; j--) a[j + 1] = a[j]; a[j + 1] = x }
      if (n == 0) return "-"
      return n % 2 ? a[(n + 1) / 2] : sprintf("%.3f", (a[n / 2] + a[n / 2 + 1]) / 2)
    }
    NR == 1 { print $0, "runs", "min_mbit_s", "max_mbit_s"; next }
    {
      k = $1 SUBSEP $2 SUBSEP $3
      if (!(k in runs)) { order[++nk] = k; bytes[k] = $4; ok[k] = 1 }
      runs[k]++
      if ($10 != "yes") { ok[k] = 0; next }
      secs[k] = secs[k] " " $5; mbs[k] = mbs[k] " " $6; rate[k] = rate[k] " " $7; rtx[k] = rtx[k] " " $9
      if ($11 != "-") snd[k] = snd[k] " " $11
      if ($12 != "-") rcv[k] = rcv[k] " " $12
      if (!(k in lo) || $7 + 0 < lo[k]) lo[k] = $7 + 0
      if (!(k in hi) || $7 + 0 > hi[k]) hi[k] = $7 + 0
    }
    END {
      for (i = 1; i <= nk; i++) {
        k = order[i]; split(k, f, SUBSEP)
        if (!ok[k]) { print f[1], f[2], f[3], bytes[k], "-", "-", "-", "-", "-", "no", "-", "-", runs[k], "-", "-"; continue }
        print f[1], f[2], f[3], bytes[k], median(secs[k]), median(mbs[k]), median(rate[k]), "-", median(rtx[k]), "yes",
          median(snd[k]), median(rcv[k]), runs[k], lo[k], hi[k]
      }
    }' "$1"
}
if wants fast; then
  # The tbf veth's loss rule must not touch the fast paths' packets, nor the
  # NFQUEUE emulators run (they only see ua0/ub0, ua2/ub2).
  stop_emulators
  for path in veth loopback; do
    if [[ $path == veth ]]; then peer=$IP_B1:$PORT; else peer=127.0.0.1:$LO_PORT; fi
    for loss in $FAST_LOSSES; do
      set_fast_loss "$loss"
      for ((round = 1; round <= FAST_RUNS; round++)); do
        # Even rounds run the transports in reverse: on a VM whose speed
        # drifts, no transport always goes first (the table's order is fixed).
        order=$FAST_TRANSPORTS
        if ((round % 2 == 0)); then order=$(tr ' ' '\n' <<<"$FAST_TRANSPORTS" | tac | tr '\n' ' '); order=${order% }; fi
        echo "bench/run.sh: fast path $path, $FAST_SIZE per transfer at ${loss}% loss, round $round of $FAST_RUNS (${order}) ..." >&2
        part=$WORK/part.csv
        if ! bulk_client "$peer" "$FAST_SIZE" "$loss" "$CC" "$order" \
            "$WORK/fast-client.log"; then
          echo "bench/run.sh: some fast-path transfers failed ($path, ${loss}% loss; rows marked verified=no)" >&2
          FAILED=1
        fi
        awk -v p="$path" 'NR == 1 { print "path," $0; next } { print p "," $0 }' "$part" >"$part.path"
        append_rows "$part.path" "$FAST_RUNS_CSV"
      done
    done
  done
  fast_medians "$FAST_RUNS_CSV" >"$FAST_CSV"
  # A missed clean-veth target gets the profile of why: one more udpmsg
  # transfer with both ends under `perf record`, counted over the transfer
  # (bench/profile_window.sh).
  veth_ratio=$(awk -F, '$1 == "veth" && $3 == "0%" && $10 == "yes" { r[$2] = $7 }
    END { if (r["udpmsg"] > 0 && r["tcp-cubic"] > 0) printf "%.4f", r["udpmsg"] / r["tcp-cubic"] }' \
    "$FAST_CSV")
  PROFILE_WHY=
  if [[ $PROFILE != 0 && -n $veth_ratio ]] &&
      awk -v r="$veth_ratio" 'BEGIN { exit !(r < 0.7) }'; then
    PROFILE_WHY=$(awk -v r="$veth_ratio" 'BEGIN {
      printf "the clean veth'"'"'s target was missed: %.2fx CUBIC, %.0f%% short", r, 100 * (1 - r / 0.7) }')
  elif [[ $PROFILE == 2 ]]; then
    PROFILE_WHY="asked for with --profile"
  fi
  if [[ -n $PROFILE_WHY ]]; then
    if ! command -v perf >/dev/null; then
      echo "perf is not installed (apt-get install linux-perf): no profile." >"$PROFILE_MD"
    else
      echo "bench/run.sh: $PROFILE_WHY: profiling one $PROFILE_SIZE udpmsg transfer ..." >&2
      set_fast_loss 0
      perf record -F 4000 -o "$WORK/receiver.perf" -p "$BULK_SERVER_PID" >/dev/null 2>&1 &
      perf_pid=$!
      sleep 0.5
      part=$WORK/part.csv
      ip netns exec "$NS_A" perf record -F 4000 -o "$WORK/sender.perf" -- "$BIN" bench bulk \
        --bench_role client --bench_peer "$IP_B1:$PORT" --bench_size "$PROFILE_SIZE" \
        --bench_loss 0% --cc "$CC" --bench_transports udpmsg --timeout "$TIMEOUT" --format csv \
        >"$part" 2>>"$WORK/fast-client.log" || true
      kill -INT "$perf_pid" 2>/dev/null || true
      wait "$perf_pid" || true
      {
        awk -F, 'NR == 2 { printf "udpmsg %s Mbit/s under perf (%s bytes; sender %s, receiver %s", \
          $6, $3, $10, $11; print " CPU s/GB).\n" }' "$part"
        "$ROOT/bench/profile_window.sh" sender "$WORK/sender.perf" 15 || true
        echo
        "$ROOT/bench/profile_window.sh" receiver "$WORK/receiver.perf" 15 || true
      } >"$PROFILE_MD"
    fi
  fi
  ip netns exec "$NS_A" nft flush chain inet udpmsg_bench input
  ip netns exec "$NS_B" nft flush chain inet udpmsg_bench input
fi

# --- 5. Fairness ----------------------------------------------------------------------
# bench fairness's CSV rows with leading bottleneck and udpmsg_cc columns.
FAIR_CSV=$WORK/fairness.csv
: >"$FAIR_CSV"
# What the TCP sender in a went through per run (nstat's absolute counters
# before and after; only the fairness flows send TCP from a meanwhile):
# bottleneck,udpmsg_cc,retransmission timeouts,retransmitted segments,segments sent
FAIR_TCP_CSV=$WORK/fairness-tcp.csv
: >"$FAIR_TCP_CSV"
tcp_counters() {  # "timeouts retrans out" of namespace a
  ip netns exec "$NS_A" nstat -as TcpExtTCPTimeouts TcpRetransSegs TcpOutSegs 2>/dev/null |
    awk '$1 == "TcpExtTCPTimeouts" { t = $2 } $1 == "TcpRetransSegs" { r = $2 }
         $1 == "TcpOutSegs" { o = $2 } END { print t + 0, r + 0, o + 0 }'
}
if wants fairness; then
  for bottleneck in $FAIR_BOTTLENECKS; do
    peer=$IP_B
    [[ $bottleneck == router ]] && peer=$IP_B2
    for cc in $FAIR_CCS; do
      set_loss 0
      echo "bench/run.sh: fairness, $FAIR_FLOWS at once for $FAIR_DURATION through the $RATE tbf ($bottleneck), udpmsg $cc ..." >&2
      part=$WORK/part.csv
      read -r t0 r0 o0 < <(tcp_counters)
      if ! ip netns exec "$NS_A" "$BIN" bench fairness --bench_role client \
          --bench_peer "$peer:$PORT" --bench_flows "$FAIR_FLOWS" --bench_duration "$FAIR_DURATION" \
          --cc "$cc" --timeout "$TIMEOUT" --format csv \
          >"$part" 2> >(tee -a "$WORK/fairness-client.log" >&2); then
        echo "bench/run.sh: a fairness flow failed (udpmsg $cc, $bottleneck)" >&2
        FAILED=1
      fi
      read -r t1 r1 o1 < <(tcp_counters)
      echo "$bottleneck,$cc,$((t1 - t0)),$((r1 - r0)),$((o1 - o0))" >>"$FAIR_TCP_CSV"
      stop_emulators_and_report
      awk -v b="$bottleneck" -v c="$cc" \
        'NR == 1 { print "bottleneck,udpmsg_cc," $0; next } { print b "," c "," $0 }' \
        "$part" >"$part.cc"
      append_rows "$part.cc" "$FAIR_CSV"
    done
  done
fi

# --- 6. Connections -------------------------------------------------------------------
# One chat server (spawned by the bench, in namespace a) and $CONN_N members
# in one client process, over loopback; no tbf, no loss. The table (markdown)
# goes into the report; the same figures as JSON beside it.
CONN_MD=$WORK/connections.md
CONN_JSON=$WORK/connections.json
if wants connections; then
  # Loopback only: no loss rule, no emulator.
  stop_emulators
  ip netns exec "$NS_A" nft flush chain inet udpmsg_bench input
  echo "bench/run.sh: bench connections, $CONN_N chat members, idle $CONN_IDLE, $CONN_RATE lines/s for $CONN_LOAD ..." >&2
  conn_args=(bench connections --bench_connections "$CONN_N" --bench_line_rate "$CONN_RATE"
             --bench_idle "$CONN_IDLE" --bench_load "$CONN_LOAD")
  echo "udpmsg ${conn_args[*]}" >>"$COMMANDS"
  if ! ip netns exec "$NS_A" "$BIN" "${conn_args[@]}" --format markdown \
      >"$CONN_MD" 2> >(tee -a "$WORK/connections.log" >&2); then
    echo "bench/run.sh: bench connections failed or lost connections (see its table)" >&2
    FAILED=1
  fi
  # The JSON for the targets: the figures of the same table.
  awk -F'|' '/^\| / && !/^\|---/ && !/^\| figure/ {
      for (i = 2; i <= 3; i++) gsub(/^ +| +$/, "", $i); v[$2] = $3 }
    END {
      printf "{\"members\": \"%s\", \"rss_per_connection_bytes\": \"%s\", \"cpu_idle\": \"%s\", \"deliveries_per_s\": \"%s\", \"lost\": \"%s\", \"order_mismatches\": \"%s\", \"server_rss_idle_mib\": \"%s\"}\n",
        v["members at end"], v["server RSS per connection B"], v["server CPU idle"], v["deliveries/s"],
        v["lost connections"], v["order mismatches"], v["server RSS idle MiB"] }' "$CONN_MD" >"$CONN_JSON"
fi

# --- 7. Cluster -----------------------------------------------------------------------
# One chat room over 1, 2, 3 servers through a redis-server the benchmark
# starts on 127.0.0.1 of namespace a (AOF, fsync every second); no loss.
CLUSTER_MD=$WORK/cluster.md
if wants cluster; then
  stop_emulators
  ip netns exec "$NS_A" nft flush chain inet udpmsg_bench input
  echo "bench/run.sh: bench cluster, one room over 1, 2, 3 servers through Redis, $CLUSTER_SECONDS s per run ..." >&2
  cluster_args=(--servers 1,2,3 --seconds "$CLUSTER_SECONDS" --latency_rate 1000
                --latency_seconds "$CLUSTER_LAT_SECONDS")
  echo "cluster_bench ${cluster_args[*]}" >>"$COMMANDS"
  if ! ip netns exec "$NS_A" "$CLUSTER_BIN" "${cluster_args[@]}" --format markdown \
      >"$CLUSTER_MD" 2> >(tee -a "$WORK/cluster.log" >&2); then
    echo "bench/run.sh: bench cluster failed" >&2
    FAILED=1
  fi
fi
END_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)

# --- Results -----------------------------------------------------------------
mkdir -p "$OUT"
rm -f "$OUT/$NAME.md" "$OUT/$NAME"-{rate,latency,bulk,fast,fast-runs,fairness,fairness-tcp}.csv "$OUT/$NAME-bulk.png" \
  "$OUT/$NAME-connections.json" "$OUT/$NAME-cluster.md"
[[ -s $WORK/rate.csv ]] && cp "$WORK/rate.csv" "$OUT/$NAME-rate.csv"
[[ -s $LAT_CSV ]] && cp "$LAT_CSV" "$OUT/$NAME-latency.csv"
[[ -s $CSV ]] && cp "$CSV" "$OUT/$NAME-bulk.csv"
[[ -s $FAST_CSV ]] && cp "$FAST_CSV" "$OUT/$NAME-fast.csv"
[[ -s $FAST_RUNS_CSV ]] && cp "$FAST_RUNS_CSV" "$OUT/$NAME-fast-runs.csv"
[[ -s $FAIR_CSV ]] && cp "$FAIR_CSV" "$OUT/$NAME-fairness.csv"
[[ -s $FAIR_TCP_CSV ]] && cp "$FAIR_TCP_CSV" "$OUT/$NAME-fairness-tcp.csv"
[[ -s $CONN_JSON ]] && cp "$CONN_JSON" "$OUT/$NAME-connections.json"
[[ -s $CLUSTER_MD ]] && cp "$CLUSTER_MD" "$OUT/$NAME-cluster.md"

csv_to_md() {  # a CSV file as a Markdown table
  awk -F, 'NR == 1 { printf "|"; for (i = 1; i <= NF; i++) printf " %s |", $i; printf "\n|";
                     for (i = 1; i <= NF; i++) printf "---|"; printf "\n"; next }
           { printf "|"; for (i = 1; i <= NF; i++) printf " %s |", $i; printf "\n" }' "$1"
}

# The targets of the benchmark issue, each with its figure and verdict.
targets() {
  if [[ -s $WORK/rate.csv ]]; then
    awk -F, 'NR > 1 { rate[$1] = $3 }
      END {
        u = rate["udpmsg unreliable"]; r = rate["raw sendto/recvfrom"]
        if (u == "" || r == "") { print "- udpmsg unreliable message rate >= 80% of raw sendto/recvfrom: not measured"; exit }
        printf "- udpmsg unreliable message rate >= 80%% of raw sendto/recvfrom: %.0f%% (%s)\n", 100 * u / r, (u / r >= 0.8) ? "met" : "NOT met"
      }' "$WORK/rate.csv"
  fi
  if [[ -s $LAT_CSV ]]; then
    awk -F, 'NR > 1 { p99[$1 "@" $2] = $6 }
      function check(who, loss,   u, t) {
        u = p99[who "@" loss]; t = p99["TCP_NODELAY@" loss]
        if (u == "" || t == "" || u == "-" || t == "-") { printf "- %s p99 at %s loss lower than TCP_NODELAY: not measured\n", who, loss; return }
        printf "- %s p99 at %s loss lower than TCP_NODELAY'"'"'s: %s us vs %s us, %.2fx (%s)\n", who, loss, u, t, u / t, (u + 0 < t + 0) ? "met" : "NOT met"
      }
      END { check("udpmsg reliable-ordered", "1%"); check("udpmsg unreliable", "1%") }' "$LAT_CSV"
  fi
  if [[ -s $CSV ]]; then
    awk -F, -v transports="$BULK_TRANSPORTS" 'NR > 1 && $9 == "yes" { rate[$1 "@" $2] = $6 }
      function check(mine, loss, other, want, what,   u, o) {
        u = rate[mine "@" loss]; o = rate[other "@" loss]
        if (u == "" || o == "") { printf "- %s bulk >= %sx %s at %s loss%s: not measured\n", mine, want, other, loss, what; return }
        printf "- %s bulk >= %sx %s at %s loss%s: %.2fx (%s)\n", mine, want, other, loss, what, u / o, verdict(u / o, want)
      }
      function verdict(r, want) { return r >= want ? "met" : sprintf("NOT met: %.0f%% short", 100 * (1 - r / want)) }
      END {
        n = split(transports, t, " ")
        for (j = 1; j <= n; j++) {
          if (t[j] !~ /^udpmsg/) continue
          for (i = 1; i <= n; i++) if (t[i] ~ /^tcp/) check(t[j], "5%", t[i], 3, "")
          for (i = 1; i <= n; i++) if (t[i] == "enet") check(t[j], "5%", "enet", 2, "")
          for (i = 1; i <= n; i++) if (t[i] ~ /^tcp/) check(t[j], "0%", t[i], 0.5, " on the rate-limited veth")
        }
      }' "$CSV"
  fi
  if [[ -s $FAST_CSV ]]; then
    # path,transport,loss,bytes,seconds,MB/s,Mbit/s,vs_tcp,retransmits,verified,send,recv
    awk -F, -v transports="$FAST_TRANSPORTS" 'NR > 1 && $10 == "yes" {
        k = $1 "@" $2 "@" $3; rate[k] = $7
        if ($11 != "-" && $12 != "-") cpu[k] = $11 + $12
      }
      function verdict(r, want) { return r >= want ? "met" : sprintf("NOT met: %.0f%% short", 100 * (1 - r / want)) }
      function check(path, loss, other, want,   u, o) {
        u = rate[path "@udpmsg@" loss]; o = rate[path "@" other "@" loss]
        if (u == "" || o == "") { printf "- udpmsg >= %sx %s on %s at %s loss: not measured\n", want, other, where[path], loss; return }
        printf "- udpmsg >= %sx %s on %s at %s loss: %.0f vs %.0f Mbit/s, %.2fx (%s)\n", want, other, where[path], loss, u, o, u / o, verdict(u / o, want)
      }
      function check_cpu(path, loss, other, want,   u, o, r) {
        u = cpu[path "@udpmsg@" loss]; o = cpu[path "@" other "@" loss]
        if (u == "" || o == "" || o <= 0) { printf "- udpmsg sender + receiver CPU per GB <= %sx %s'"'"'s on %s at %s loss: not measured\n", want, other, where[path], loss; return }
        r = u / o
        printf "- udpmsg sender + receiver CPU per GB <= %sx %s'"'"'s on %s at %s loss: %.2f vs %.2f s/GB, %.2fx (%s)\n", want, other, where[path], loss, u, o, r, r <= want ? "met" : sprintf("NOT met: %.0f%% over", 100 * (r / want - 1))
      }
      END {
        where["veth"] = "the clean veth"; where["loopback"] = "loopback"
        n = split(transports, t, " ")
        for (i = 1; i <= n; i++) if (t[i] ~ /^tcp/) check("veth", "0%", t[i], 0.7)
        for (i = 1; i <= n; i++) if (t[i] ~ /^tcp/) check("loopback", "0%", t[i], 0.5)
        for (i = 1; i <= n; i++) if (t[i] == "enet") {
          check("veth", "0%", "enet", 1.5); check("veth", "1%", "enet", 1.5)
          check("loopback", "0%", "enet", 1.5); check("loopback", "1%", "enet", 1.5)
        }
        for (i = 1; i <= n; i++) if (t[i] ~ /^tcp/) { check_cpu("veth", "0%", t[i], 2); check_cpu("loopback", "0%", t[i], 2) }
      }' "$FAST_CSV"
  fi
  if [[ -s $FAIR_CSV ]]; then
    fairness_summary "- "
  fi
  if [[ -s $CONN_MD ]]; then
    awk -F'|' -v n="$CONN_N" -v rate="$CONN_RATE" '/^\| / && !/^\|---/ {
        for (i = 2; i <= 3; i++) gsub(/^ +| +$/, "", $i); v[$2] = $3 }
      END {
        m = v["members at end"]; cpu = v["server CPU idle"]; sub("%", "", cpu)
        if (m == "") { print "- bench connections: not measured"; exit }
        if (n + 0 >= 10000) printf "- %d idle connections under 5%% of one core: %s%% (%s)\n", n, cpu, (cpu + 0 < 5 && m + 0 == n) ? "met" : "NOT met"
        else printf "- idle connections under 5%% of one core (the target is at 10,000; this run had %d): %s%%\n", n, cpu
        # Met when nobody was lost, one order, and the room kept up: at least
        # 95% of the offered members x lines/s delivered during the load.
        offered = m * rate
        printf "- a room of %s members receiving %s lines/s (%d deliveries/s), every member in the same order, none lost: %s deliveries/s, %s lost, %s order mismatches (%s)\n",
          m, rate, offered, v["deliveries/s"], v["lost connections"], v["order mismatches"],
          (v["lost connections"] == "0" && v["order mismatches"] == "0" && v["deliveries/s"] + 0 >= 0.95 * offered) ? "met" : "NOT met"
      }' "$CONN_MD"
  fi
  if [[ -s $CLUSTER_MD ]]; then
    cluster_summary "- " | grep "in one order" || true
  fi
}

# The cluster section's figures in a few lines (each prefixed by $1): lines/s
# per server count, whether every server read every line in one order, and
# the latency the Redis hop adds.
cluster_summary() {
  # Throughput rows: | servers | seconds | accepted | accepted/s | vs 1 server |
  # delivered/s each | deliveries/s | lost | order | ...; latency rows:
  # | room | servers | hop | lines | lost | p50 us | p99 us | ...
  awk -F'|' -v prefix="$1" '/^### / { table++ } /^\| / && !/^\|---/ {
      for (i = 2; i < NF; i++) gsub(/^ +| +$/, "", $i)
      if ($2 == "servers" || $2 == "room") next
      if (table == 1) {
        rate = rate sprintf("%s%s: %s (%s)", rate == "" ? "" : ", ", $2, $5, $6)
        if ($9 != "0" || $10 != "one") bad = bad sprintf(" %s servers: %s lost, order %s;", $2, $9, $10)
        n++
      } else if ($2 == "LocalRoom") { lp50 = $7; lp99 = $8
      } else if ($4 == "other server" && op50 == "") { op50 = $7; op99 = $8; on = $3; if ($6 != "0") bad = bad sprintf(" latency %s servers: %s lost;", $3, $6) }
    }
    END {
      if (n == 0) { printf "%scluster: not measured\n", prefix; exit }
      printf "%sone room over N servers through Redis, lines/s accepted (vs 1 server): %s\n", prefix, rate
      printf "%severy server read every accepted line, in one order: %s\n", prefix, bad == "" ? "met" : "NOT met:" bad
      if (lp50 != "" && op50 != "" && lp50 + 0 > 0 && lp99 + 0 > 0)
        printf "%sthe Redis hop (%s servers, Say on A to Read on B) against a LocalRoom'"'"'s: p50 %s vs %s us (%+d us, %.1fx), p99 %s vs %s us (%+d us, %.1fx)\n",
          prefix, on, op50, lp50, op50 - lp50, op50 / lp50, op99, lp99, op99 - lp99, op99 / lp99
    }' "$CLUSTER_MD"
}

# Per bottleneck and udpmsg congestion controller of the fairness runs:
# Jain's index and the target, each line prefixed by $1. The target is the
# router's (a shared bottleneck); the sender's own queue is reported beside.
fairness_summary() {
  # bottleneck,udpmsg_cc,flow,transport,bytes,seconds,Mbit/s,share,verified
  awk -F, -v prefix="$1" 'NR > 1 {
      k = $2 ", " ($1 == "router" ? "router bottleneck" : "bottleneck on the sender'"'"'s own egress (beside the target)")
      if (!(k in seen)) { seen[k] = 1; order[++ncc] = k }
      n[k]++; x = ($9 == "yes") ? $7 + 0 : -1
      if (x < 0) bad[k] = 1
      sum[k] += x; sq[k] += x * x; rate[k, n[k]] = x; name[k, n[k]] = $4
    }
    END {
      for (c = 1; c <= ncc; c++) {
        cc = order[c]
        if (bad[cc] || sq[cc] <= 0) { printf "%sfairness, udpmsg %s: not measured (a flow failed)\n", prefix, cc; continue }
        fair = sum[cc] / n[cc]; out = ""
        for (i = 1; i <= n[cc]; i++) {
          share = rate[cc, i] / fair
          if (share < 0.5 || share > 2) out = out sprintf("%sflow %d (%s) at %.2fx", out == "" ? "" : ", ", i, name[cc, i], share)
        }
        printf "%sfairness, udpmsg %s: each flow within a factor of 2 of its fair share: %s; Jain'"'"'s index %.3f\n", prefix, cc, out == "" ? "met" : "NOT met: " out, sum[cc] * sum[cc] / (n[cc] * sq[cc])
      }
    }' "$FAIR_CSV"
}

# The bulk rows' udpmsg congestion controllers side by side, per loss rate.
cc_side_by_side() {
  awk -F, -v transports="$BULK_TRANSPORTS" 'NR > 1 {
      if (!($2 in seen)) { seen[$2] = 1; losses[++nl] = $2 }
      rate[$1 "@" $2] = ($9 == "yes") ? $6 : ""
      rtx[$1 "@" $2] = $8
    }
    function ratio(a, b) { return (a == "" || b == "" || b + 0 <= 0) ? "-" : sprintf("%.2fx", a / b) }
    END {
      n = split(transports, t, " "); nu = 0; cubic = ""; enet = ""
      for (i = 1; i <= n; i++) {
        if (t[i] ~ /^udpmsg/) u[++nu] = t[i]
        if (t[i] == "tcp-cubic") cubic = t[i]
        if (t[i] == "enet") enet = t[i]
      }
      if (cubic == "") for (i = 1; i <= n; i++) if (t[i] == "tcp") cubic = "tcp"
      printf "| loss |"
      for (j = 1; j <= nu; j++) printf " %s Mbit/s | retransmits |", u[j]
      if (nu == 2) printf " %s / %s |", u[2], u[1]
      if (cubic != "") { printf " %s Mbit/s |", cubic; for (j = 1; j <= nu; j++) printf " %s vs %s |", u[j], cubic }
      if (enet != "") { printf " ENet Mbit/s |"; for (j = 1; j <= nu; j++) printf " %s vs ENet |", u[j] }
      printf "\n|"
      cols = 1 + 2 * nu + (nu == 2) + (cubic != "") * (1 + nu) + (enet != "") * (1 + nu)
      for (i = 1; i <= cols; i++) printf "---|"
      printf "\n"
      for (l = 1; l <= nl; l++) {
        L = losses[l]; printf "| %s |", L
        for (j = 1; j <= nu; j++) printf " %s | %s |", rate[u[j] "@" L] == "" ? "-" : rate[u[j] "@" L], rtx[u[j] "@" L] == "" ? "-" : rtx[u[j] "@" L]
        if (nu == 2) printf " %s |", ratio(rate[u[2] "@" L], rate[u[1] "@" L])
        if (cubic != "") { c = rate[cubic "@" L]; printf " %s |", c == "" ? "-" : c; for (j = 1; j <= nu; j++) printf " %s |", ratio(rate[u[j] "@" L], c) }
        if (enet != "") { e = rate[enet "@" L]; printf " %s |", e == "" ? "-" : e; for (j = 1; j <= nu; j++) printf " %s |", ratio(rate[u[j] "@" L], e) }
        printf "\n"
      }
    }' "$CSV"
}

# The fast paths as one table: goodput, ratios and CPU per GB.
fast_table() {
  awk -F, -v transports="$FAST_TRANSPORTS" 'NR > 1 {
      k = $1 "@" $2 "@" $3; ok[k] = ($10 == "yes"); rate[k] = $7; snd[k] = $11; rcv[k] = $12; rtx[k] = $9
      range[k] = ($10 == "yes" && $13 > 1) ? sprintf("%.0f-%.0f (%d runs)", $14, $15, $13) : ($13 == "" ? "-" : $13 " run" ($13 > 1 ? "s" : ""))
      if (!(($1 "@" $3) in seen)) { seen[$1 "@" $3] = 1; keys[++nk] = $1 "@" $3 }
    }
    function ratio(a, b) { return (a == "" || b == "" || a == "-" || b == "-" || b + 0 <= 0) ? "-" : sprintf("%.2fx", a / b) }
    END {
      n = split(transports, t, " ")
      print "| path | loss | transport | Mbit/s (median) | range | vs udpmsg | retransmits | sender CPU s/GB | receiver CPU s/GB | total CPU s/GB | CPU vs udpmsg |"
      print "|---|---|---|---|---|---|---|---|---|---|---|"
      for (k = 1; k <= nk; k++) {
        split(keys[k], pl, "@")
        u = pl[1] "@udpmsg@" pl[2]
        ucpu = (ok[u] && snd[u] != "-" && rcv[u] != "-") ? snd[u] + rcv[u] : ""
        for (i = 1; i <= n; i++) {
          r = pl[1] "@" t[i] "@" pl[2]
          if (!(r in rate)) continue
          g = ok[r] ? rate[r] : "-"
          c = (ok[r] && snd[r] != "-" && rcv[r] != "-") ? sprintf("%.2f", snd[r] + rcv[r]) : "-"
          printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", pl[1], pl[2], t[i], g, range[r],
            t[i] == "udpmsg" ? "" : ratio(ok[u] ? rate[u] : "", g), rtx[r], ok[r] ? snd[r] : "-", ok[r] ? rcv[r] : "-", c,
            t[i] == "udpmsg" ? "" : ratio(ucpu, c)
        }
      }
    }' "$FAST_CSV"
}

KERNEL_TCP_CC=$(ip netns exec "$NS_A" cat /proc/sys/net/ipv4/tcp_congestion_control 2>/dev/null || echo unknown)
MD=$OUT/$NAME.md
{
  echo "# udpmsg benchmarks: one run of bench/run.sh"
  echo
  echo "| | |"
  echo "|---|---|"
  echo "| date | $START_DATE |"
  echo "| command | bench/run.sh $ARGS |"
  echo "| machine | $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') |"
  echo "| kernel | $(uname -srm) |"
  echo "| load average (1/5/15 min) | start $START_LOAD, end $END_LOAD |"
  echo "| udpmsg | congestion control $CC (rate, latency, fast); bulk: $CCS (rows udpmsg-<cc> when several); fairness: $FAIR_CCS |"
  echo "| TCP | rows \"tcp\": the namespaces' default congestion control ($KERNEL_TCP_CC${TCP_CC:+, set with --tcp-cc}); rows \"tcp-<cc>\": <cc> set per socket (TCP_CONGESTION) |"
  ROUTER_LINK=""
  wants_router && ROUTER_LINK="; fairness also through $NS_R (tbf $RATE on its egress to $NS_B)"
  echo "| link | veth $NS_A $IP_A -> $NS_B $IP_B, tbf $RATE on the sender's side, ${DELAY:-no} added RTT ($HALF_DELAY each way)$ROUTER_LINK |"
  if [[ $EMULATOR == nfqueue ]]; then
    echo "| loss and delay | udpmsg impair --nfqueue in each namespace (seeded model, every protocol, both directions) |"
  else
    echo "| loss | nftables numgen random drop, every protocol, both directions |"
  fi
  echo
  echo "## Targets"
  echo
  targets
  if [[ -s $RATE_MD ]]; then
    echo
    echo "## Message rate (loopback inside $NS_A)"
    echo
    sed 's/^### \(.*\)$/**\1**/' "$RATE_MD"
  fi
  if [[ -s $LAT_CSV ]]; then
    echo
    echo "## Latency ($NS_A -> $NS_B, loss $(echo "$LAT_LOSSES" | sed 's/\([0-9.]*\)/\1%/g'))"
    echo
    csv_to_md "$LAT_CSV"
    echo
    echo "64-byte ping-pong at 1,000/s for $LAT_DURATION per transport and loss rate; latency is"
    echo "echo arrival - scheduled send time (coordinated omission corrected), nearest-rank"
    echo "percentiles of the answered pings. Raw UDP and udpmsg unreliable count unanswered"
    echo "pings as lost; udpmsg reliable and TCP must answer all. The loss hits every protocol."
  fi
  if [[ -s $CSV ]]; then
    echo
    echo "## Bulk goodput ($SIZE per transfer, $NS_A -> $NS_B, loss $(echo "$LOSSES" | sed 's/\([0-9.]*\)/\1%/g'))"
    echo
    csv_to_md "$CSV"
    echo
    echo "Goodput: bytes delivered and verified (checksum) / time from the first byte sent to the"
    echo "last byte received at the receiver. vs_tcp: against \"tcp\" (the default congestion"
    echo "control) at the same loss. Retransmits: udpmsg fragments retransmitted, TCP"
    echo "tcpi_total_retrans, ENet packetsLost."
    echo
    echo "![goodput vs loss]($NAME-bulk.png)"
    if ((${#CCS_ARRAY[@]} > 1)); then
      echo
      echo "### udpmsg congestion controllers side by side ($RATE veth, ${DELAY:-no} added RTT)"
      echo
      cc_side_by_side
      echo
      echo "The same run, the same loss model: each udpmsg congestion controller against TCP"
      echo "and ENet at each loss rate (ratios of goodput)."
    fi
  fi
  if [[ -s $FAST_CSV ]]; then
    echo
    echo "## Fast paths ($FAST_SIZE per transfer: clean veth $NS_A -> $NS_B with no rate limit; loopback inside $NS_A; loss $(echo "$FAST_LOSSES" | sed 's/\([0-9.]*\)/\1%/g'))"
    echo
    fast_table
    echo
    echo "Each figure is the median of $FAST_RUNS runs (rounds of every transport one after the"
    echo "other, in reverse order in even rounds; range: the slowest and the fastest run; every"
    echo "run is in $NAME-fast-runs.csv)."
    echo "vs udpmsg: udpmsg's median goodput / this row's (CPU: udpmsg's total / this row's)."
    echo "CPU s/GB:"
    echo "CPU seconds (user + system, CLOCK_THREAD_CPUTIME_ID) of the sending and the receiving"
    echo "thread per 10^9 bytes delivered, each measured by its own end around the transfer (the"
    echo "receiver reports its figure in its result); the kernel's softirq work is charged to"
    echo "whichever thread ran it, on loopback and veth mostly the sender's. The loss on these paths"
    echo "is an nft numgen drop on ua1/lo in $NS_A and ub1 in $NS_B (both directions, every protocol)."
    echo "udpmsg runs with congestion control $CC; the receivers are \`bench bulk --bench_role server\`"
    echo "processes ($NS_B for the veth, $NS_A on 127.0.0.1 for loopback)."
    if [[ -s $PROFILE_MD ]]; then
      echo
      echo "### The profile of udpmsg on the clean veth ($PROFILE_WHY)"
      echo
      echo "One more $PROFILE_SIZE udpmsg transfer on the clean veth, both ends under"
      echo "\`perf record -F 4000\`, each counted over its own transfer (bench/profile_window.sh);"
      echo "self time per symbol. docs/performance.md reads these profiles and keeps what was"
      echo "tried against them."
      echo
      cat "$PROFILE_MD"
    fi
  fi
  if [[ -s $CONN_MD ]]; then
    echo
    echo "## Connections ($CONN_N chat members against one \`udpmsg chat serve\`, loopback inside $NS_A)"
    echo
    sed 's/^### \(.*\)$/**\1**/' "$CONN_MD"
    echo
    echo "One client process (\`udpmsg bench connections\`) holds every member: its client threads"
    echo "drive one udpmsg Host per 8 members, each Host's socket on its own 127.X.Y.Z, so the"
    echo "server's per-address caps stay at their defaults. Server figures from /proc/PID (VmRSS,"
    echo "utime + stime); the client's own CPU and RSS beside them: on this machine's $(nproc) CPUs the"
    echo "client shares the cores with the server. See docs/commands.md, \`bench connections\`."
  fi
  if [[ -s $CLUSTER_MD ]]; then
    echo
    echo "## One room over several servers (Redis; loopback inside $NS_A)"
    echo
    sed 's/^### \(.*\)$/**\1**/' "$CLUSTER_MD"
    echo
    echo "Each server is a RedisRoom in the cluster_bench process (its own two Redis connections"
    echo "and reader thread, as \`udpmsg chat serve --cluster\` makes it), each with one shard"
    echo "thread saying lines as fast as Say returns; redis-server (AOF, fsync every second) and"
    echo "every server share this machine's $(nproc) CPUs. No UDP members: the room is measured, not"
    echo "the transport (see Connections). bench/cluster.h says how each figure is taken."
    echo
    cluster_summary "- "
  fi
  if [[ -s $FAIR_CSV ]]; then
    echo
    echo "## Fairness ($FAIR_FLOWS at once for $FAIR_DURATION, $NS_A -> $NS_B through a $RATE tbf, ${DELAY:-no} added RTT)"
    echo
    csv_to_md "$FAIR_CSV"
    echo
    fairness_summary ""
    echo
    echo "Each flow is a timed transfer on its own connection and thread, all connected first and"
    echo "started together; goodput = verified bytes the receiver got within $FAIR_DURATION of its first"
    echo "byte / $FAIR_DURATION; share = a flow's goodput / the flows' mean (the fair share). Jain's index"
    echo "= (sum x)^2 / (n * sum x^2): 1 when equal, 1/n when one flow takes everything. Target:"
    echo "each flow within a factor of 2 of its fair share. \"udpmsg\" flows run the row's udpmsg_cc."
    if wants_router; then
      echo "bottleneck \"router\": the tbf is the egress of $NS_R, which forwards $NS_A -> $NS_B (a"
      echo "shared bottleneck, as on a network: the target's)."
    fi
    if [[ " $FAIR_BOTTLENECKS " == *" sender "* ]]; then
      echo "bottleneck \"sender\": the tbf is $NS_A's own egress (ua0), as in the bulk rows; there Linux"
      echo "TCP is hurt by its own host's queue in ways UDP sockets are not (retransmission timeouts;"
      echo "docs/benchmarks.md): reported beside the target, not as it."
    fi
    if [[ -s $FAIR_TCP_CSV ]]; then
      echo
      echo "The TCP sender in $NS_A per run (\`nstat -as\` before and after):"
      echo
      echo "| bottleneck | udpmsg_cc | TCP retransmission timeouts | TCP segments retransmitted | TCP segments sent |"
      echo "|---|---|---|---|---|"
      awk -F, '{ printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5 }' "$FAIR_TCP_CSV"
    fi
  fi
  echo
  echo "## Setup commands"
  echo
  echo '```'
  cat "$COMMANDS"
  echo '```'
  if ((QUICK)); then
    echo
    echo "Quick run (--quick): short runs; not the figures to quote."
  fi
} >"$MD"

if [[ -s $CSV ]] && command -v gnuplot >/dev/null; then
  plots=()
  declare -A POINT=([udpmsg]=7 [udpmsg-newreno]=7 [udpmsg-bbr]=13 [tcp]=5 [tcp-cubic]=4
                    [tcp-reno]=6 [tcp-bbr]=8 [enet]=9)
  for t in $BULK_TRANSPORTS; do
    case $t in
      udpmsg) title="udpmsg reliable ($BULK_CC)" ;;
      udpmsg-*) title="udpmsg reliable (${t#udpmsg-})" ;;
      tcp) title="TCP (default: $KERNEL_TCP_CC)" ;;
      tcp-*) title="TCP ${t#tcp-}" ;;
      enet) title="ENet 1.3" ;;
      *) title=$t ;;
    esac
    awk -F, -v t="$t" 'NR > 1 && $1 == t && $9 == "yes" { sub("%", "", $2); print $2, $6 }' \
      "$CSV" | sort -n >"$WORK/$t.dat"
    if [[ -s $WORK/$t.dat ]]; then
      plots+=("\"$WORK/$t.dat\" using 1:2 with linespoints lw 2 pt ${POINT[$t]:-1} title \"$title\"")
    fi
  done
  term="pngcairo size 1000,560 font 'sans,11'"
  echo 'set terminal' | gnuplot 2>&1 | grep -q pngcairo || term="png size 1000,560"
  if ((${#plots[@]})); then
    plot_cmd=$(IFS=,; echo "${plots[*]}")
    gnuplot <<EOF || echo "bench/run.sh: gnuplot failed; no plot" >&2
set terminal $term
set output "$OUT/$NAME-bulk.png"
set title "udpmsg bench bulk: $SIZE over a $RATE veth (tbf), ${DELAY:-no} added RTT, loss both ways"
set xlabel "packet loss (%)"
set ylabel "goodput (Mbit/s)"
set yrange [0:*]
set xrange [-0.5:*]
set grid
set key outside right top box
plot $plot_cmd
EOF
  fi
fi

echo "bench/run.sh: wrote $MD and its CSV/PNG files" >&2
cat "$MD"
if ((FAILED)); then
  echo "bench/run.sh: some runs failed; see above and the rows marked verified=no" >&2
  exit 1
fi
