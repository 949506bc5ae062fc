#!/bin/bash
# docs/nat-demo.sh: the run behind docs/nat.md's figures. As root: two hosts,
# each behind its own nftables masquerade NAT, a rendezvous server on the
# "internet" between them; one transfer with the NATs' default (endpoint-
# independent) mapping, one with --symmetric NATs (masquerade fully-random:
# a new port per destination). Namespaces are named ud_nat_*, removed at exit.
# The server binds 10.99.0.1: udpmsg answers from the address the route
# picks, so a server with several addresses must bind the one clients use.
#   sudo docs/nat-demo.sh bazel-bin/cli/udpmsg [--symmetric] [SIZE_MIB]
set -euo pipefail
UDPMSG=$(realpath "$1")
MODE=${2:-}
SIZE=${3:-8}
NAT_FLAGS=""
[ "$MODE" = "--symmetric" ] && NAT_FLAGS="fully-random"
P=ud_nat
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for ns in pub natA natB hostA hostB; do ip netns del ${P}_$ns 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
for ns in pub natA natB hostA hostB; do ip netns add ${P}_$ns; ip -n ${P}_$ns link set lo up; done
x() { ip netns exec ${P}_$1 "${@:2}"; }
# pub: the server at 10.99.0.1, routes between the NATs' public sides.
x pub ip addr add 10.99.0.1/32 dev lo
x pub sysctl -qw net.ipv4.ip_forward=1
i=1
for side in A B; do
  ip link add ${P}p$side netns ${P}_pub type veth peer name ${P}w$side netns ${P}_nat$side
  ip link add ${P}l$side netns ${P}_nat$side type veth peer name ${P}h$side netns ${P}_host$side
  x pub ip addr add 10.99.$i.1/24 dev ${P}p$side
  x pub ip link set ${P}p$side up
  x nat$side ip addr add 10.99.$i.2/24 dev ${P}w$side
  x nat$side ip link set ${P}w$side up
  x nat$side ip addr add 192.168.$i.1/24 dev ${P}l$side
  x nat$side ip link set ${P}l$side up
  x nat$side ip route add default via 10.99.$i.1
  x nat$side sysctl -qw net.ipv4.ip_forward=1
  x nat$side nft -f - <<NFT
table ip nat {
  chain postrouting { type nat hook postrouting priority 100; oifname "${P}w$side" masquerade $NAT_FLAGS; }
}
table ip filter {
  chain forward { type filter hook forward priority 0; policy drop;
    iifname "${P}l$side" accept
    ct state established,related accept
  }
}
NFT
  x host$side ip addr add 192.168.$i.2/24 dev ${P}h$side
  x host$side ip link set ${P}h$side up
  x host$side ip route add default via 192.168.$i.1
  i=$((i + 1))
done
head -c $((SIZE << 20)) /dev/urandom > "$WORK/in"
ip netns exec ${P}_pub "$UDPMSG" rendezvous --port 7000 --relay_port 7001 --bind 10.99.0.1 2> "$WORK/rv.log" > /dev/null &
RV=$!
PIDS+=($RV)
sleep 0.3
ip netns exec ${P}_hostA "$UDPMSG" recv --reliable --via 10.99.0.1:7000 --name alice --out "$WORK/out" 2> "$WORK/recv.log" > /dev/null &
RECV=$!
PIDS+=($RECV)
for _ in $(seq 50); do grep -q "registered as" "$WORK/recv.log" && break; sleep 0.1; done
echo "\$ udpmsg recv --reliable --via 10.99.0.1:7000 --name alice --out FILE    # hostA, behind NAT A"
echo "\$ udpmsg send --reliable --via 10.99.0.1:7000 alice --file FILE           # hostB, behind NAT B"
x hostB "$UDPMSG" send --reliable --via 10.99.0.1:7000 alice --file "$WORK/in" --progress off 2>&1 | sed 's/^/send> /'
wait $RECV || true
sed 's/^/recv> /' "$WORK/recv.log"
cmp "$WORK/in" "$WORK/out" && echo "files identical"
kill -INT $RV 2>/dev/null || true
wait $RV 2>/dev/null || true
sed 's/^/server> /' "$WORK/rv.log"
