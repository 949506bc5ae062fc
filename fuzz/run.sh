#!/usr/bin/env bash
# fuzz/run.sh [SECONDS]: builds the codec fuzzer with clang's libFuzzer,
# AddressSanitizer and UndefinedBehaviorSanitizer (directly, not with Bazel:
# Bazel's toolchain here is GCC), and runs it for SECONDS (default 60) on a
# copy of fuzz/corpus/codec. Crash inputs are kept in $FUZZ_ARTIFACTS
# (default /tmp/udpmsg-fuzz-artifacts); reproduce one with
#   $FUZZ_ARTIFACTS/codec_fuzzer CRASH_FILE
# Exit codes: 0 no crash, 1 the fuzzer found a crash, 2 missing tools.
set -euo pipefail

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]]; then
  echo "usage: fuzz/run.sh [SECONDS]" >&2
  exit 2
fi

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
protoc --cpp_out="$work/gen" proto/frame.proto

# The Abseil libraries the codec uses directly (Debian's shared objects carry
# their own dependencies).
absl_libs=(status statusor cord strings str_format_internal time time_zone
           int128 raw_logging_internal throw_delegate base)

echo "fuzz/run.sh: building $artifacts/codec_fuzzer" >&2
clang++ -std=c++17 -O1 -g -fno-omit-frame-pointer \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I. -I"$work/gen" \
  fuzz/codec_fuzzer.cc fuzz/codec_fuzzer_mutator.cc \
  proto/codec.cc proto/crc32c.cc proto/frames_util.cc \
  "$work/gen/proto/frame.pb.cc" \
  -o "$artifacts/codec_fuzzer" \
  -lprotobuf "${absl_libs[@]/#/-labsl_}" -lpthread

cp -r fuzz/corpus/codec "$work/corpus"
echo "fuzz/run.sh: fuzzing for ${seconds}s" >&2
"$artifacts/codec_fuzzer" \
  -max_total_time="$seconds" -max_len=1300 -print_final_stats=1 \
  -artifact_prefix="$artifacts/" "$work/corpus"
