#!/usr/bin/env bash
# bench/run.sh: `udpmsg bench bulk` between two network namespaces joined by
# a veth pair, with a tbf rate limit on the sender's side and nftables
# dropping a fraction of ALL packets (both directions) at each loss rate.
#
#   sudo bench/run.sh            16 MiB per transfer at 0, 1, 5, 10% loss
#   sudo bench/run.sh --quick    4 MiB smoke run (writes bulk-quick.*)
#
#   sudo bench/run.sh --delay 20ms   20 ms added RTT (10 ms each way), loss and
#                                    delay by `udpmsg impair --nfqueue`
#
# Writes bench/results/bulk.{csv,md,png} (bulk-quick.* with --quick; a
# -rtt<D> suffix with --delay, e.g. bulk-quick-rtt20ms.*).
# Needs root, `ip netns`, tc and nft (nftables and gnuplot are installed with
# apt-get when missing). The namespaces are always torn down on exit.
#
# Topology (all on this machine):
#   udpmsg-a (client, senders)  10.77.0.1  ua0 ==veth== ub0  10.77.0.2  udpmsg-b (server)
#   ua0 egress: tbf rate 20mbit burst 32kbit latency 50ms
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
usage: sudo bench/run.sh [--quick] [--size SIZE] [--losses "0 1 5 10"] [--rate 20mbit]
                         [--cc newreno|bbr] [--delay 10ms] [--bin PATH] [--out DIR]
                         [--timeout 30s] [--emulator nft|nfqueue] [--tcp-cc cubic|bbr|reno]
  --quick      4 MiB per transfer, results in DIR/bulk-quick.{csv,md,png}
  --size       bytes per transfer (default 16MiB)
  --losses     loss rates in percent, space-separated (default "0 1 5 10")
  --rate       tbf rate on the sender's veth (default 20mbit)
  --cc         udpmsg congestion controller (default newreno)
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
SIZE=16MiB
LOSSES="0 1 5 10"
RATE=20mbit
CC=newreno
TCP_CC=
BIN=${UDPMSG:-}
OUT=$ROOT/bench/results
TIMEOUT=30s
DELAY=
EMULATOR=
while (($#)); do
  case $1 in
    --quick) QUICK=1; SIZE=4MiB ;;
    --size) SIZE=${2:?}; shift ;;
    --losses) LOSSES=${2:?}; shift ;;
    --rate) RATE=${2:?}; shift ;;
    --cc) CC=${2:?}; shift ;;
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
NAME=bulk
((QUICK)) && NAME=bulk-quick
[[ -n $DELAY ]] && NAME=$NAME-rtt$DELAY
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

# --- Namespaces, veth, tbf -------------------------------------------------------
NS_A=udpmsg-a
NS_B=udpmsg-b
IP_A=10.77.0.1
IP_B=10.77.0.2
PORT=9000
WORK=$(mktemp -d /tmp/udpmsg-bench.XXXXXX)
SERVER_PID=
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
  if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  ip netns del "$NS_A" 2>/dev/null || true
  ip netns del "$NS_B" 2>/dev/null || true
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Leftovers of an interrupted run.
ip netns del "$NS_A" 2>/dev/null || true
ip netns del "$NS_B" 2>/dev/null || true

COMMANDS=$WORK/commands.txt
run() {  # runs and records a setup command
  echo "$*" >>"$COMMANDS"
  "$@"
}
run ip netns add "$NS_A"
run ip netns add "$NS_B"
run ip link add ua0 netns "$NS_A" type veth peer name ub0 netns "$NS_B"
run ip -n "$NS_A" addr add "$IP_A/24" dev ua0
run ip -n "$NS_B" addr add "$IP_B/24" dev ub0
run ip -n "$NS_A" link set lo up
run ip -n "$NS_B" link set lo up
run ip -n "$NS_A" link set ua0 up
run ip -n "$NS_B" link set ub0 up
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

# --- Server ------------------------------------------------------------------
SERVER_LOG=$WORK/server.log
ip netns exec "$NS_B" "$BIN" bench bulk --bench_role server --port "$PORT" \
  --timeout "$TIMEOUT" --cc "$CC" --duration 3h 2>"$SERVER_LOG" &
SERVER_PID=$!
for _ in $(seq 100); do
  grep -q "enet listening" "$SERVER_LOG" 2>/dev/null && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$SERVER_LOG" >&2; die "the server did not start"; }
  sleep 0.1
done
grep -q "enet listening" "$SERVER_LOG" || die "the server did not start within 10 s"

# --- Client, one run per loss rate --------------------------------------------
START_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
CSV=$WORK/$NAME.csv
: >"$CSV"
FAILED=0
for loss in $LOSSES; do
  set_loss "$loss"
  echo "bench/run.sh: $SIZE per transfer at ${loss}% loss ..." >&2
  part=$WORK/part.csv
  if ! ip netns exec "$NS_A" "$BIN" bench bulk --bench_role client \
      --bench_peer "$IP_B:$PORT" --bench_size "$SIZE" --bench_loss "${loss}%" --cc "$CC" \
      --timeout "$TIMEOUT" --format csv >"$part" 2> >(tee -a "$WORK/client.log" >&2); then
    echo "bench/run.sh: some transfers failed at ${loss}% loss (rows marked verified=no)" >&2
    FAILED=1
  fi
  if [[ $EMULATOR == nfqueue ]]; then
    stop_emulators
    for ns in "$NS_A" "$NS_B"; do
      echo "bench/run.sh: $ns $(tail -n 1 "$WORK/emulator-$ns.log")" >&2
    done
  fi
  if [[ ! -s $CSV ]]; then head -n1 "$part" >"$CSV"; fi
  tail -n +2 "$part" >>"$CSV"
done
END_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)

# --- Results -----------------------------------------------------------------
mkdir -p "$OUT"
cp "$CSV" "$OUT/$NAME.csv"
MD=$OUT/$NAME.md
{
  echo "# udpmsg bench bulk: goodput on a rate-limited, lossy veth"
  echo
  echo "| | |"
  echo "|---|---|"
  echo "| date | $(date -u '+%Y-%m-%d %H:%M:%S UTC') |"
  echo "| machine | $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') |"
  echo "| kernel | $(uname -srm) |"
  echo "| load average (1/5/15 min) | start $START_LOAD, end $END_LOAD |"
  echo "| transfer | $SIZE per transfer, one at a time; udpmsg cc $CC |"
  if [[ -n "$TCP_CC" ]]; then
    echo "| TCP cc | $TCP_CC (set with --tcp-cc) |"
  else
    echo "| TCP cc | $(ip netns exec "$NS_A" cat /proc/sys/net/ipv4/tcp_congestion_control 2>/dev/null || echo unknown) (the kernel default in the namespaces) |"
  fi
  echo "| link | veth $NS_A $IP_A -> $NS_B $IP_B, tbf $RATE on the sender's side, ${DELAY:-no} added RTT ($HALF_DELAY each way) |"
  if [[ $EMULATOR == nfqueue ]]; then
    echo "| loss and delay | udpmsg impair --nfqueue in each namespace (seeded model, every protocol, both directions): $(echo "$LOSSES" | sed 's/\([0-9.]*\)/\1%/g') |"
  else
    echo "| loss | nftables, every protocol, both directions: $(echo "$LOSSES" | sed 's/\([0-9.]*\)/\1%/g') |"
  fi
  echo
  awk -F, 'NR == 1 { printf "|"; for (i = 1; i <= NF; i++) printf " %s |", $i; printf "\n|";
                     for (i = 1; i <= NF; i++) printf "---|"; printf "\n"; next }
           { printf "|"; for (i = 1; i <= NF; i++) printf " %s |", $i; printf "\n" }' "$CSV"
  echo
  echo "Goodput: bytes delivered and verified (checksum) / time from the first byte sent to the"
  echo "last byte received at the receiver. vs_tcp: against TCP at the same loss."
  echo "Retransmits: udpmsg fragments retransmitted, TCP tcpi_total_retrans, ENet packetsLost."
  echo
  echo "Targets:"
  echo
  awk -F, 'NR > 1 && $9 == "yes" { rate[$1 "@" $2] = $6 }
    function check(loss, other, want, what,   u, o) {
      u = rate["udpmsg@" loss]; o = rate[other "@" loss]
      if (u == "" || o == "") { printf "- udpmsg >= %sx %s at %s loss%s: not measured\n", want, other, loss, what; return }
      printf "- udpmsg >= %sx %s at %s loss%s: %.2fx (%s)\n", want, other, loss, what, u / o, (u / o >= want) ? "met" : "NOT met"
    }
    END { check("5%", "tcp", 3, ""); check("5%", "enet", 2, ""); check("0%", "tcp", 0.5, " on the rate-limited veth") }' "$CSV"
  echo
  echo "Setup commands:"
  echo
  echo '```'
  cat "$COMMANDS"
  echo '```'
  if ((QUICK)); then
    echo
    echo "Quick smoke run (--quick): small transfers; not the figures to quote."
  fi
} >"$MD"

if command -v gnuplot >/dev/null; then
  plots=()
  declare -A TITLE=([udpmsg]="udpmsg reliable ($CC)" [tcp]="TCP (kernel)" [enet]="ENet 1.3")
  declare -A POINT=([udpmsg]=7 [tcp]=5 [enet]=9)
  for t in udpmsg tcp enet; do
    awk -F, -v t="$t" 'NR > 1 && $1 == t && $9 == "yes" { sub("%", "", $2); print $2, $6 }' \
      "$CSV" | sort -n >"$WORK/$t.dat"
    if [[ -s $WORK/$t.dat ]]; then
      plots+=("\"$WORK/$t.dat\" using 1:2 with linespoints lw 2 pt ${POINT[$t]} title \"${TITLE[$t]}\"")
    fi
  done
  term="pngcairo size 900,560 font 'sans,11'"
  echo 'set terminal' | gnuplot 2>&1 | grep -q pngcairo || term="png size 900,560"
  if ((${#plots[@]})); then
    plot_cmd=$(IFS=,; echo "${plots[*]}")
    gnuplot <<EOF || echo "bench/run.sh: gnuplot failed; no plot" >&2
set terminal $term
set output "$OUT/$NAME.png"
set title "udpmsg bench bulk: $SIZE over a $RATE veth (tbf), nftables loss both ways"
set xlabel "packet loss (%)"
set ylabel "goodput (Mbit/s)"
set yrange [0:*]
set xrange [-0.5:*]
set grid
set key bottom left box opaque
plot $plot_cmd
EOF
  fi
fi

echo "bench/run.sh: wrote $OUT/$NAME.{csv,md,png}" >&2
cat "$MD"
if ((FAILED)); then
  echo "bench/run.sh: some transfers failed; see the rows marked verified=no" >&2
  exit 1
fi
