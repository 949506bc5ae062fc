#!/usr/bin/env bash
# The top of a `perf record` profile of one `bench bulk` end, counted over
# the transfer only, as Markdown (bench/run.sh puts it in its report when a
# fast-path target is missed; docs/performance.md reads such profiles).
#
#   bench/profile_window.sh sender|receiver PERF.DATA [TOP]
#
# The window runs from the first to the last sample in a function only that
# end's data path runs (the sender: Connection::SendOne and SendBurst,
# SendQueue::NextRun, the codec's encoders; the receiver:
# Connection::OnData, the reassembler, Codec::DecodeImpl), so the payload's
# generation and checksum before and after the transfer do not count. Self
# time per symbol (argument lists dropped), the kernel's share first.
# Record without -g:
#
#   perf record -F 4000 -o sender.data -- udpmsg bench bulk --bench_role client ...
set -euo pipefail

usage() { echo "usage: bench/profile_window.sh sender|receiver PERF.DATA [TOP]" >&2; exit 2; }
[[ $# -ge 2 ]] || usage
case $1 in
  sender)
    keys='Connection::Send(One|Burst)|SendQueue::NextRun|Codec::(EncodeAppend|WriteFast)' ;;
  receiver) keys='Connection::OnData|Reassembler::|Codec::DecodeImpl' ;;
  *) usage ;;
esac
data=$2
top=${3:-15}
[[ -r $data ]] || { echo "bench/profile_window.sh: cannot read $data" >&2; exit 1; }

perf script -i "$data" -F time,ip,sym,dso -G 2>/dev/null |
awk -v keys="$keys" -v top="$top" -v role="$1" '
  # "TIME:  IP SYMBOL (DSO)"; a symbol may hold parentheses, a DSO does not.
  {
    t = $1; sub(/:$/, "", t)
    rest = $0; sub(/^[^:]*: +[0-9a-f]+ /, "", rest)
    dso = rest; sub(/.* \(/, "", dso); sub(/\)$/, "", dso)
    sym = rest; sub(/ \([^()]*\)$/, "", sym)
    n++; ts[n] = t + 0; syms[n] = sym; kern[n] = dso ~ /kernel/
    if (sym ~ keys) {
      if (first == "" || t + 0 < first) first = t + 0
      if (t + 0 > last) last = t + 0
    }
  }
  END {
    if (first == "") { printf "No %s samples in its data path: nothing to count.\n", role; exit }
    for (i = 1; i <= n; i++) {
      if (ts[i] < first || ts[i] > last) continue
      w++; k += kern[i]
      s = syms[i]; gsub(/\(anonymous namespace\)/, "{anon}", s); sub(/\(.*/, "", s)
      if (length(s) > 90) s = substr(s, 1, 87) "..."
      count[s (kern[i] ? " [kernel]" : "")]++
    }
    printf "**The %s**: %d samples in %.3f s (from its first to its last sample in `%s`), ", \
      role, w, last - first, keys
    printf "%.1f%% in the kernel.\n\n", 100 * k / w
    print "| share | symbol |"
    print "|---|---|"
    for (j = 1; j <= top; j++) {
      best = ""; bv = 0
      for (s in count) if (count[s] > bv) { bv = count[s]; best = s }
      if (best == "") break
      printf "| %.1f%% | `%s` |\n", 100 * bv / w, best
      delete count[best]
    }
  }'
