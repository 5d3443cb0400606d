#!/usr/bin/env bash
# make fuzz: run every fuzz target for FUZZ_SECONDS (default 600) each, two at a time.
# FUZZ_TARGETS (default: all) picks some of them.
# Needs the nightly toolchain and cargo-fuzz (installed from crates.io when missing). Seeds:
# our own sample package, plus the shared vectors read in place when ../shared/vectors exists.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${FUZZ_SECONDS:-600}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
cargo +nightly fuzz build -O

mkdir -p fuzz/corpus/package_reader fuzz/corpus/yaml_metadata fuzz/corpus/query_string fuzz/corpus/http_framing fuzz/corpus/splice fuzz/corpus/deployment
cargo run -q --release --bin appman-packager -- create-package fuzz/corpus/package_reader/sample.ampkg testdata/sample
cp testdata/sample/info.yaml fuzz/corpus/yaml_metadata/info.yaml
cp fuzz/corpus/package_reader/sample.ampkg fuzz/corpus/splice/sample.ampkg
printf '\001\011\002\006\000\377\040\003payload bytes for the splice fuzzer' > fuzz/corpus/splice/members
printf 'id=io.example.hello&architecture=linux_x86_64&filter=h%%C3%%A9llo+w' > fuzz/corpus/query_string/seed
printf 'GET /hello?project-id=P HTTP/1.1\r\nHost: x\r\n\r\nPUT /package/upload HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc' > fuzz/corpus/http_framing/pipelined
printf 'PUT /package/upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: v\r\n\r\nGET / HTTP/1.0\n\n' > fuzz/corpus/http_framing/chunked
printf -- '--XyZ\r\nContent-Disposition: form-data; name="description"\r\n\r\ntext\r\n--XyZ\r\nContent-Disposition: form-data; name="package"; filename="a.ampkg"\r\n\r\n\037\213\r\n--XyZ--\r\n' > fuzz/corpus/deployment/form
seeds=()
if [ -d ../shared/vectors ]; then
    seeds=(../shared/vectors/reference ../shared/vectors/more ../shared/vectors/invalid)
fi

only=" ${FUZZ_TARGETS:-package_reader yaml_metadata query_string http_framing splice deployment} "
run() { # target [seed dirs...]
    local target=$1; shift
    case "$only" in *" $target "*) ;; *) return 0 ;; esac
    cargo +nightly fuzz run -O "$target" "fuzz/corpus/$target" "$@" -- \
        -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -print_final_stats=1 \
        > "fuzz/$target.log" 2>&1 && echo "$target: clean" || { echo "$target: FAILED, see fuzz/$target.log"; return 1; }
}
status=0
run package_reader "${seeds[@]}" & a=$!
run yaml_metadata & b=$!
wait $a || status=1
wait $b || status=1
run query_string & a=$!
run http_framing & b=$!
wait $a || status=1
wait $b || status=1
run splice "${seeds[@]}" & a=$!
run deployment & b=$!
wait $a || status=1
wait $b || status=1
for t in $only; do
    grep -h "stat::number_of_executed_units\|stat::average_exec_per_sec\|stat::peak_rss_mb" "fuzz/$t.log" | sed "s/^/$t /"
done
exit $status
