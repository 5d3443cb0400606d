#!/usr/bin/env bash
# make fuzz: run every fuzz target for FUZZ_SECONDS (default 600) each, two at a time.
# Needs the nightly toolchain and cargo-fuzz (installed from crates.io when missing). Seeds:
# our own sample package, plus the shared vectors read in place when ../shared/vectors exists.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${FUZZ_SECONDS:-600}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
cargo +nightly fuzz build -O

mkdir -p fuzz/corpus/package_reader fuzz/corpus/yaml_metadata fuzz/corpus/query_string
cargo run -q --release --bin appman-packager -- create-package fuzz/corpus/package_reader/sample.ampkg testdata/sample
cp testdata/sample/info.yaml fuzz/corpus/yaml_metadata/info.yaml
printf 'id=io.example.hello&architecture=linux_x86_64&filter=h%%C3%%A9llo+w' > fuzz/corpus/query_string/seed
seeds=()
if [ -d ../shared/vectors ]; then
    seeds=(../shared/vectors/reference ../shared/vectors/more ../shared/vectors/invalid)
fi

run() { # target [seed dirs...]
    local target=$1; shift
    cargo +nightly fuzz run -O "$target" "fuzz/corpus/$target" "$@" -- \
        -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -print_final_stats=1 \
        > "fuzz/$target.log" 2>&1 && echo "$target: clean" || { echo "$target: FAILED, see fuzz/$target.log"; return 1; }
}
status=0
run package_reader "${seeds[@]}" & a=$!
run yaml_metadata & b=$!
wait $a || status=1
wait $b || status=1
run query_string || status=1
for t in package_reader yaml_metadata query_string; do
    grep -h "stat::number_of_executed_units\|stat::average_exec_per_sec\|stat::peak_rss_mb" "fuzz/$t.log" | sed "s/^/$t /"
done
exit $status
