#!/usr/bin/env bash
# Figures of the static build (make dist) against the dynamic one: sizes, ldd, time from exec
# to the listening line (median of 10; the static one alone in an empty chroot when root), and
# idle RSS. Usage: bench/dist.sh (after make dist and make release).
set -euo pipefail
cd "$(dirname "$0")/.."
DYN=target/release
W=$(mktemp -d /tmp/amps-bench-dist.XXXXXX)
trap 'rm -rf "$W"' EXIT

stripped() { strip -o "$W/stripped" "$1" && stat -c %s "$W/stripped"; }
echo "sizes (bytes):"
for b in appman-package-server appman-packager; do
    echo "  $b: static $(stat -c %s dist/$b), dynamic stripped $(stripped $DYN/$b) ($(stat -c %s $DYN/$b) unstripped)"
done
echo "ldd:"
for b in dist/appman-package-server dist/appman-packager $DYN/appman-package-server; do
    echo "  $b: $(ldd "$b" 2>&1 | tr '\n' ' ' | tr -s ' ')"
done

# start ROOT|- BINARY: prints seconds from exec to the listening line, and the idle RSS (KiB).
start_once() {
    local root=$1 bin=$2 log="$W/log" t0 t1 pid
    rm -rf "$W/data" "$root/data" 2>/dev/null || true
    t0=$(date +%s.%N)
    if [ "$root" = - ]; then
        "$bin" --dd "$W/data" --la 127.0.0.1:0 > "$log" 2>&1 &
    else
        chroot "$root" /appman-package-server --dd /data --la 127.0.0.1:0 > "$log" 2>&1 &
    fi
    pid=$!
    until grep -q "listening on" "$log"; do kill -0 "$pid" 2>/dev/null || { cat "$log"; exit 1; }; done
    t1=$(date +%s.%N)
    sleep 0.2
    local rss; rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
    kill "$pid"; wait "$pid" 2>/dev/null || true
    awk -v a="$t0" -v b="$t1" -v r="$rss" 'BEGIN { printf "%.4f %s\n", b - a, r }'
}
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

mkdir -p "$W/root"
cp dist/appman-package-server "$W/root/"
if [ "$(id -u)" = 0 ]; then static_root="$W/root"; where="in an empty chroot"; else static_root=-; where="(not root: no chroot)"; fi
: > "$W/static"; : > "$W/dynamic"
for _ in 1 2 3 4 5 6 7 8 9 10; do
    if [ "$static_root" = - ]; then start_once - dist/appman-package-server >> "$W/static"; else start_once "$static_root" x >> "$W/static"; fi
    start_once - "$DYN/appman-package-server" >> "$W/dynamic"
done
echo "exec to listening line, median of 10: static $where $(cut -d' ' -f1 "$W/static" | median) s, dynamic $(cut -d' ' -f1 "$W/dynamic" | median) s"
echo "idle RSS: static $(cut -d' ' -f2 "$W/static" | median) KiB, dynamic $(cut -d' ' -f2 "$W/dynamic" | median) KiB"
