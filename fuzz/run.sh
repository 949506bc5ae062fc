#!/usr/bin/env bash
# fuzz/run.sh [codec|endpoint|reassembler|transfer_receiver|chat_server] [SECONDS]: builds a fuzzer (default
# codec) with clang's libFuzzer, AddressSanitizer and UndefinedBehaviorSanitizer
# (directly, not with Bazel: Bazel's toolchain here is GCC), and runs it for
# SECONDS (default 60) on a copy of fuzz/corpus/TARGET. `fuzz/run.sh SECONDS`
# still fuzzes the codec. Crash inputs are kept in $FUZZ_ARTIFACTS (default
# /tmp/udpmsg-fuzz-artifacts); reproduce one with
#   $FUZZ_ARTIFACTS/TARGET_fuzzer CRASH_FILE
# Exit codes: 0 no crash, 1 the fuzzer found a crash, 2 usage or missing tools.
set -euo pipefail

usage() {
  echo "usage: fuzz/run.sh [codec|endpoint|reassembler|transfer_receiver|chat_server] [SECONDS]" >&2
  exit 2
}

target=codec
if [[ $# -gt 0 && ! "$1" =~ ^[0-9]+$ ]]; then
  target="$1"
  shift
fi
case "$target" in
  codec|endpoint|reassembler|transfer_receiver|chat_server) ;;
  *) usage ;;
esac
[[ $# -le 1 ]] || usage
seconds="${1:-60}"
[[ "$seconds" =~ ^[0-9]+$ ]] || usage

cd "$(dirname "$0")/.."

if ! command -v clang++ >/dev/null 2>&1; then
  echo "fuzz/run.sh: clang++ not found; install it with:" >&2
  echo "  apt-get install -y clang" >&2
  exit 2
fi
if ! command -v protoc >/dev/null 2>&1; then
  echo "fuzz/run.sh: protoc not found; install it with:" >&2
  echo "  apt-get install -y protobuf-compiler libprotobuf-dev" >&2
  exit 2
fi

artifacts="${FUZZ_ARTIFACTS:-/tmp/udpmsg-fuzz-artifacts}"
mkdir -p "$artifacts"
work="$(mktemp -d "${TMPDIR:-/tmp}/udpmsg-fuzz.XXXXXX")"
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/gen"
protoc --cpp_out="$work/gen" proto/frame.proto apps/transfer/transfer.proto apps/chat/chat.proto

# The Abseil libraries used directly (Debian's shared objects carry their own
# dependencies).
absl_libs=(status statusor cord strings str_format_internal time time_zone
           int128 raw_logging_internal throw_delegate base hash city
           low_level_hash raw_hash_set)

proto_srcs=(proto/codec.cc proto/crc32c.cc proto/frames_util.cc
            "$work/gen/proto/frame.pb.cc")
libs=(-lprotobuf "${absl_libs[@]/#/-labsl_}" -lpthread)
max_len=1300
case "$target" in
  codec)
    srcs=(fuzz/codec_fuzzer.cc fuzz/codec_fuzzer_mutator.cc "${proto_srcs[@]}")
    ;;
  endpoint)
    # The sans-I/O core without reliable/runtime.cc (sockets, epoll).
    srcs=(fuzz/endpoint_fuzzer.cc "${proto_srcs[@]}" udp/socket_address.cc udp/address_prefix.cc)
    for f in reliable/*.cc; do
      [[ "$f" == reliable/runtime.cc ]] || srcs+=("$f")
    done
    libs+=(-lsodium)
    max_len=20000  # a sequence of datagrams
    ;;
  reassembler)
    srcs=(fuzz/reassembler_fuzzer.cc reliable/reassembler.cc)
    max_len=4096
    ;;
  transfer_receiver)
    srcs=(fuzz/transfer_receiver_fuzzer.cc apps/transfer/receiver.cc apps/transfer/sink.cc
          apps/transfer/sha256.cc udpmsg/text.cc
          "$work/gen/apps/transfer/transfer.pb.cc")
    libs+=(-lsodium)
    max_len=8192  # a sequence of messages
    ;;
  chat_server)
    srcs=(fuzz/chat_server_fuzzer.cc apps/chat/server_core.cc apps/chat/rules.cc
          apps/chat/text.cc apps/chat/local_room.cc apps/chat/room_state.cc udpmsg/text.cc
          udp/socket_address.cc udp/address_prefix.cc "$work/gen/apps/chat/chat.pb.cc")
    libs+=(-lsodium)
    max_len=8192  # a sequence of peer events
    ;;
esac

binary="$artifacts/${target}_fuzzer"
echo "fuzz/run.sh: building $binary" >&2
clang++ -std=c++17 -O1 -g -fno-omit-frame-pointer \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I. -I"$work/gen" "${srcs[@]}" -o "$binary" "${libs[@]}"

cp -r "fuzz/corpus/$target" "$work/corpus"
echo "fuzz/run.sh: fuzzing $target for ${seconds}s" >&2
"$binary" \
  -max_total_time="$seconds" -max_len="$max_len" -print_final_stats=1 \
  -artifact_prefix="$artifacts/${target}-" "$work/corpus"
