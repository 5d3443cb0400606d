#!/usr/bin/env bash
# make bench: every figure of the performance goals, measured in one run on this machine.
# Packages are made with our own packager; baselines are nginx (sendfile), wrk and gzip.
# Last, bench/attacks.py measures a legitimate client's latency under hostile clients.
# Usage: bench/run.sh [--quick]   (--quick: 100 packages instead of 1000 for the start-up row)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
COUNT=1000
[ "${1:-}" = "--quick" ] && COUNT=100

need=()
for tool in nginx:nginx-light wrk:wrk curl:curl gzip:gzip openssl:openssl; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${tool%%:*}" ] || need+=("${tool##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# BENCH_BIN_DIR=dist measures the static binaries of make dist instead.
BIN=${BENCH_BIN_DIR:-target/release}
[ -n "${BENCH_BIN_DIR:-}" ] || cargo build --release -q
BIN=$(cd "$BIN" && pwd)
SERVER=$BIN/appman-package-server
PACKAGER=$BIN/appman-packager
echo "binaries: $SERVER ($("$SERVER" --version))"
W=$(mktemp -d /tmp/amps-bench.XXXXXX)
chmod 755 "$W"   # nginx workers must read it
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT

# --- helpers ------------------------------------------------------------------------------
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.3f\", $1 }"; }
ROWS=()
row() { # figure, value, goal-text, ok(1/0)
    local mark; if [ "$4" = 1 ]; then mark="meets"; else mark="MISSES"; fi
    ROWS+=("$(printf '%-74s %12s   goal %-8s %s' "$1" "$2" "$3" "$mark")")
    echo "  $1: $2 (goal $3, $mark)"
}
start_server() { # data-dir log [args...] -> sets SPID, SPORT
    local data=$1 log=$2; shift 2
    "$SERVER" --dd "$data" --la 127.0.0.1:0 "$@" > "$log" 2>&1 &
    SPID=$!; PIDS+=("$SPID")
    until grep -qs "listening on" "$log"; do
        kill -0 "$SPID" 2>/dev/null || { cat "$log"; exit 1; }
        sleep 0.01
    done
    SPORT=$(grep "listening on" "$log" | sed 's/.*://')
}
best_speed() { # url [curl options] -> bytes/s: best of 3 rounds of 10 sequential downloads
    local best=0 t0 t1 bytes s url=$1; shift
    for _ in 1 2 3; do
        bytes=0
        t0=$(now)
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            bytes=$((bytes + $(curl -s "$@" -o /dev/null -w '%{size_download}' "$url")))
        done
        t1=$(now)
        s=$(awk -v b="$bytes" -v a="$t0" -v c="$t1" 'BEGIN { print b / (c - a) }')
        best=$(awk -v a="$best" -v b="$s" 'BEGIN { print (b > a) ? b : a }')
    done
    echo "$best"
}
best_time() { # curl options... -> seconds: best of 5
    local best=999 t0 t1
    for _ in 1 2 3 4 5; do
        t0=$(now); curl -s -o /dev/null "$@"; t1=$(now)
        best=$(awk -v a="$best" -v b="$(calc "$t1 - $t0")" 'BEGIN { print (b < a) ? b : a }')
    done
    echo "$best"
}
source_dir() { # dir id payload-bytes
    mkdir -p "$1"
    cp testdata/sample/icon.png "$1/"
    sed "s/io.example.hello/$2/g" testdata/sample/info.yaml > "$1/info.yaml"
    head -c "$3" /dev/urandom | base64 -w 0 > "$1/payload.txt"
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/ {print $2}') GiB"

# --- the 64 MiB package --------------------------------------------------------------------
echo "making a 64 MiB package"
source_dir "$W/big" io.example.big $((48 * 1024 * 1024))
"$PACKAGER" create-package "$W/big.ampkg" "$W/big"
SIZE=$(stat -c %s "$W/big.ampkg")
echo "  package: $((SIZE / 1024 / 1024)) MiB"

# --- upload ---------------------------------------------------------------------------------
mkdir -p "$W/d1"
start_server "$W/d1" "$W/d1.log"
MAIN_PID=$SPID; MAIN_PORT=$SPORT
gzip -dc < "$W/big.ampkg" | sha256sum > /dev/null   # warm the page cache
t0=$(now); gzip -dc < "$W/big.ampkg" | sha256sum > /dev/null; t1=$(now)
BASE=$(calc "$t1 - $t0")
t0=$(now); curl -s -T "$W/big.ampkg" "http://127.0.0.1:$MAIN_PORT/package/upload" > "$W/up.json"; t1=$(now)
grep -q '"status":"ok"' "$W/up.json" || { cat "$W/up.json"; exit 1; }
UP=$(calc "$t1 - $t0")
echo "  upload ${UP}s, gzip -dc | sha256sum ${BASE}s"
ok=$(awk -v a="$UP" -v b="$BASE" 'BEGIN { print (a / b <= 1.5) ? 1 : 0 }')
row "upload (PUT) 64 MiB incl. verification / gzip -dc | sha256sum (time)" "$(calc "$UP / $BASE")" "<= 1.5" "$ok"

# --- the same package dropped into upload/: verified while copied into .packages/ ----------
mkdir -p "$W/d4/upload"
start_server "$W/d4" "$W/d4.log"
cp "$W/big.ampkg" "$W/d4/upload/.big.part"
t0=$(now); mv "$W/d4/upload/.big.part" "$W/d4/upload/big.ampkg"
until grep -q "adding   io.example.big" "$W/d4.log"; do sleep 0.005; done
t1=$(now)
FOLDER=$(calc "$t1 - $t0")
echo "  folder upload ${FOLDER}s from drop to the + adding line (includes the 0.2 s quiet time)"
row "upload/ folder 64 MiB, verified while copied / HTTP upload (time, incl. 0.2 s quiet)" "$(calc "$FOLDER / $UP")" "<= 2" "$(awk -v a="$FOLDER" -v b="$UP" 'BEGIN { print (a / b <= 2) ? 1 : 0 }')"
kill "$SPID"

# --- unsigned download vs nginx -------------------------------------------------------------
mkdir -p "$W/www" "$W/nginx"
cp "$W/big.ampkg" "$W/www/big.ampkg"
cat > "$W/nginx/nginx.conf" <<NGINX
worker_processes 2;
pid $W/nginx/nginx.pid;
error_log $W/nginx/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    types { application/json json; }
    default_type application/octet-stream;
    server { listen 127.0.0.1:18081; root $W/www; }
}
NGINX
"$NGINX" -c "$W/nginx/nginx.conf" -p "$W/nginx"
trap 'kill $(cat "$W/nginx/nginx.pid") 2>/dev/null || true; cleanup' EXIT
until curl -s -o /dev/null "http://127.0.0.1:18081/big.ampkg"; do sleep 0.01; done
NGINX_SPEED=$(best_speed "http://127.0.0.1:18081/big.ampkg")
OURS_SPEED=$(best_speed "http://127.0.0.1:$MAIN_PORT/package/download?id=io.example.big")
echo "  download: ours $(calc "$OURS_SPEED / 1e6") MB/s, nginx $(calc "$NGINX_SPEED / 1e6") MB/s"
ok=$(awk -v a="$OURS_SPEED" -v b="$NGINX_SPEED" 'BEGIN { print (a / b >= 0.8) ? 1 : 0 }')
row "unsigned download 64 MiB, MB/s, ours / nginx (sendfile)" "$(calc "$OURS_SPEED / $NGINX_SPEED")" ">= 0.8" "$ok"

# --- peak RSS after the upload and 8 parallel downloads ------------------------------------
for i in 1 2 3 4 5 6 7 8; do
    curl -s -o /dev/null "http://127.0.0.1:$MAIN_PORT/package/download?id=io.example.big" &
done
wait $(jobs -p | grep -v "^$MAIN_PID$") 2>/dev/null || true
RSS=$(awk '/VmHWM/ {print $2}' "/proc/$MAIN_PID/status")
ok=$(awk -v a="$RSS" 'BEGIN { print (a / 1024 <= 64) ? 1 : 0 }')
row "peak RSS after the 64 MiB upload and 8 parallel downloads, MiB" "$(calc "$RSS / 1024")" "<= 64" "$ok"

# --- store-signed download ------------------------------------------------------------------
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$W/store.key" -out "$W/store.crt" -days 30 -subj "/CN=bench store" 2>/dev/null
openssl pkcs12 -export -inkey "$W/store.key" -in "$W/store.crt" -out "$W/store.p12" -passout pass:password 2>/dev/null
mkdir -p "$W/d2/.packages"
cp "$W/big.ampkg" "$W/d2/.packages/io.example.big_all.ampkg"
start_server "$W/d2" "$W/d2.log" --sc "$W/store.p12" --sp password
SIGNED_URL="http://127.0.0.1:$SPORT/package/download?id=io.example.big&hardware-id=08154711"
t0=$(now); curl -s -o "$W/signed.ampkg" "$SIGNED_URL"; t1=$(now)
echo "  first signed download after the start-up scan: $(calc "$t1 - $t0")s"
"$PACKAGER" store-verify-package "$W/signed.ampkg" "$W/store.crt" 08154711
SIGNED_SPEED=$(best_speed "$SIGNED_URL")
UNSIGNED_SPEED=$(best_speed "http://127.0.0.1:$MAIN_PORT/package/download?id=io.example.big")
echo "  signed $(calc "$SIGNED_SPEED / 1e6") MB/s, unsigned $(calc "$UNSIGNED_SPEED / 1e6") MB/s"
ok=$(awk -v a="$SIGNED_SPEED" -v b="$UNSIGNED_SPEED" 'BEGIN { print (a / b >= 0.8) ? 1 : 0 }')
row "store-signed download (hardware id) / unsigned download, MB/s" "$(calc "$SIGNED_SPEED / $UNSIGNED_SPEED")" ">= 0.8" "$ok"

# --- resume, 304 and the signing cache across a restart -------------------------------------
SIGNED_SIZE=$(stat -c %s "$W/signed.ampkg")
ten() { # curl options... URL -> the same request 10 times over one connection, in one curl
    local url=${*: -1} args=()
    for _ in 1 2 3 4 5 6 7 8 9 10; do args+=(-o /dev/null "$url"); done
    best_time "${@:1:$#-1}" "${args[@]}"
}
FULL=$(ten "$SIGNED_URL")
HALF=$(ten -H "Range: bytes=$((SIGNED_SIZE / 2))-" "$SIGNED_URL")
echo "  signed 64 MiB, 10 downloads: full ${FULL}s, resumed from the middle ${HALF}s"
row "resume of a 64 MiB signed download from its middle / full download (time)" "$(calc "$HALF / $FULL")" "<= 0.6" "$(awk -v a="$HALF" -v b="$FULL" 'BEGIN { print (a / b <= 0.6) ? 1 : 0 }')"
ETAG=$(curl -s -D - -o /dev/null "$SIGNED_URL" | awk -F': ' 'tolower($1) == "etag" { print $2 }' | tr -d '\r')
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: $ETAG" "$SIGNED_URL")" = 304 ]
wrk -t1 -c1 -d5s --latency -H "If-None-Match: $ETAG" "$SIGNED_URL" > "$W/wrk304.txt"
median_ms() { awk '$1 == "50%" { v = $2; if (v ~ /us$/) { sub(/us/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms/, "", v) } else if (v ~ /s$/) { sub(/s/, "", v); v *= 1000 } print v }' "$1"; }
NOT_MODIFIED=$(median_ms "$W/wrk304.txt")
row "304 to If-None-Match on a signed 64 MiB download, median latency, ms" "$NOT_MODIFIED" "<= 1" "$(awk -v a="$NOT_MODIFIED" 'BEGIN { print (a <= 1) ? 1 : 0 }')"
kill "$SPID"; wait "$SPID" 2>/dev/null || true
start_server "$W/d2" "$W/d2b.log" --sc "$W/store.p12" --sp password
SIGNED_URL="http://127.0.0.1:$SPORT/package/download?id=io.example.big&hardware-id=08154711"
t0=$(now); curl -s -o /dev/null "$SIGNED_URL"; t1=$(now)
FIRST=$(calc "$t1 - $t0")
LATER=$(best_time "$SIGNED_URL")
curl -s -o "$W/signed2.ampkg" "$SIGNED_URL"
cmp -s "$W/signed.ampkg" "$W/signed2.ampkg" || { echo "signed download changed across a restart"; exit 1; }
echo "  after a restart: first signed download ${FIRST}s, later ${LATER}s (same bytes as before)"
row "first signed download after a restart / a later one (time)" "$(calc "$FIRST / $LATER")" "<= 2" "$(awk -v a="$FIRST" -v b="$LATER" 'BEGIN { print (a / b <= 2) ? 1 : 0 }')"
kill "$SPID"

# --- store-signed download right after an upload (the CI flow) ---------------------------
mkdir -p "$W/d6"
start_server "$W/d6" "$W/d6.log" --sc "$W/store.p12" --sp password
URL6="http://127.0.0.1:$SPORT/package/download?id=io.example.big"
t0=$(now); curl -s -T "$W/big.ampkg" "http://127.0.0.1:$SPORT/package/upload" > "$W/up6.json"; t1=$(now)
grep -q '"status":"ok"' "$W/up6.json" || { cat "$W/up6.json"; exit 1; }
echo "  upload with --sc: $(calc "$t1 - $t0")s"
t0=$(now); curl -s -o /dev/null "$URL6&hardware-id=08154711"; t1=$(now)
FIRST_SIGNED=$(calc "$t1 - $t0")
curl -s -o "$W/first6.ampkg" "$URL6&hardware-id=08154711"
"$PACKAGER" store-verify-package "$W/first6.ampkg" "$W/store.crt" 08154711
UNSIGNED_TIME=$(best_time "http://127.0.0.1:$MAIN_PORT/package/download?id=io.example.big")
echo "  first signed download right after the upload ${FIRST_SIGNED}s, an unsigned download ${UNSIGNED_TIME}s"
row "first signed download right after the upload / unsigned download (time)" "$(calc "$FIRST_SIGNED / $UNSIGNED_TIME")" "<= 1.2" "$(awk -v a="$FIRST_SIGNED" -v b="$UNSIGNED_TIME" 'BEGIN { print (a / b <= 1.2) ? 1 : 0 }')"
LATER_SIGNED=$(best_time "$URL6&hardware-id=08154711")
row "a later signed download / unsigned download (time)" "$(calc "$LATER_SIGNED / $UNSIGNED_TIME")" "<= 1.05" "$(awk -v a="$LATER_SIGNED" -v b="$UNSIGNED_TIME" 'BEGIN { print (a / b <= 1.05) ? 1 : 0 }')"
CURLS=()
for i in 1 2 3 4 5 6 7 8; do curl -s -o /dev/null "$URL6&hardware-id=device-$i" & CURLS+=($!); done
wait "${CURLS[@]}"
RSS6=$(awk '/VmHWM/ {print $2}' "/proc/$SPID/status")
row "peak RSS after the upload and 8 parallel signed downloads (8 hardware ids), MiB" "$(calc "$RSS6 / 1024")" "<= 64" "$(awk -v a="$RSS6" 'BEGIN { print (a / 1024 <= 64) ? 1 : 0 }')"
CACHE_BYTES=$(du -sb "$W/d6/.cache" | cut -f1)
PACKAGES_BYTES=$(du -sb "$W/d6/.packages" | cut -f1)
echo "  .cache/ ${CACHE_BYTES} bytes, .packages/ ${PACKAGES_BYTES} bytes"
row "size of .cache/ / size of .packages/ after signed downloads" "$(calc "$CACHE_BYTES / $PACKAGES_BYTES")" "<= 0.01" "$(awk -v a="$CACHE_BYTES" -v b="$PACKAGES_BYTES" 'BEGIN { print (a / b <= 0.01) ? 1 : 0 }')"
kill "$SPID"; wait "$SPID" 2>/dev/null || true

# --- HTTPS: ours against plain HTTP and against nginx with TLS, same file, same certificate --
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$W/tls.key" -out "$W/tls.crt" -days 30 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost 2>/dev/null
mkdir -p "$W/d5/.packages" "$W/nginx-tls"
cp "$W/big.ampkg" "$W/d5/.packages/io.example.big_all.ampkg"
start_server "$W/d5" "$W/d5.log" --tls-cert "$W/tls.crt" --tls-key "$W/tls.key"
TLS_PORT=$SPORT
cat > "$W/nginx-tls/nginx.conf" <<NGINX
worker_processes 2;
pid $W/nginx-tls/nginx.pid;
error_log $W/nginx-tls/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:18443 ssl;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_certificate $W/tls.crt;
        ssl_certificate_key $W/tls.key;
        root $W/www;
    }
}
NGINX
"$NGINX" -c "$W/nginx-tls/nginx.conf" -p "$W/nginx-tls"
trap 'kill $(cat "$W/nginx/nginx.pid") $(cat "$W/nginx-tls/nginx.pid") 2>/dev/null || true; cleanup' EXIT
TLS_CURL=(--cacert "$W/tls.crt")
until curl -s "${TLS_CURL[@]}" -o /dev/null "https://localhost:18443/big.ampkg"; do sleep 0.01; done
# Both negotiate TLS 1.3 with curl (AES-256-GCM); then both again capped at TLS 1.2.
for version in 1.3 1.2; do
    HTTPS_SPEED=$(best_speed "https://localhost:$TLS_PORT/package/download?id=io.example.big" "${TLS_CURL[@]}" --tls-max "$version")
    NGINX_TLS_SPEED=$(best_speed "https://localhost:18443/big.ampkg" "${TLS_CURL[@]}" --tls-max "$version")
    echo "  HTTPS (TLS $version): ours $(calc "$HTTPS_SPEED / 1e6") MB/s, nginx $(calc "$NGINX_TLS_SPEED / 1e6") MB/s; plain HTTP ours $(calc "$UNSIGNED_SPEED / 1e6") MB/s"
    row "unsigned download 64 MiB over HTTPS (TLS $version) / over plain HTTP, MB/s" "$(calc "$HTTPS_SPEED / $UNSIGNED_SPEED")" "figure" 1
    row "unsigned download 64 MiB over HTTPS (TLS $version), MB/s, ours / nginx" "$(calc "$HTTPS_SPEED / $NGINX_TLS_SPEED")" ">= 0.8" "$(awk -v a="$HTTPS_SPEED" -v b="$NGINX_TLS_SPEED" 'BEGIN { print (a / b >= 0.8) ? 1 : 0 }')"
done
kill "$SPID"

# --- start-up with many packages -------------------------------------------------------------
PER=$((1024 * 1024 * 1024 / COUNT))
echo "making $COUNT packages of about $((PER / 1024)) KiB"
mkdir -p "$W/d3/.packages"
source_dir "$W/many" io.example.p0 $((PER * 100 / 101))
for i in $(seq 1 "$COUNT"); do
    sed -i "s/io.example.p[0-9]*/io.example.p$i/g" "$W/many/info.yaml"
    head -c 64 /dev/urandom | base64 -w 0 > "$W/many/unique.txt"
    "$PACKAGER" create-package "$W/d3/.packages/io.example.p${i}_all.ampkg" "$W/many"
done
TOTAL=$(du -cb "$W"/d3/.packages/*.ampkg | tail -1 | cut -f1)
echo "  total $((TOTAL / 1024 / 1024)) MiB"
gzip -dc "$W"/d3/.packages/*.ampkg > /dev/null   # warm the page cache
t0=$(now); gzip -dc "$W"/d3/.packages/*.ampkg > /dev/null; t1=$(now)
GZ=$(calc "$t1 - $t0")
t0=$(now); start_server "$W/d3" "$W/d3.log"; t1=$(now)
START=$(calc "$t1 - $t0")
MANY_PORT=$SPORT
echo "  start-up ${START}s, gzip -dc ${GZ}s"
ok=$(awk -v a="$START" -v b="$GZ" 'BEGIN { print (a / b <= 1.2) ? 1 : 0 }')
row "start-up until listening, $COUNT packages / gzip -dc of all (time)" "$(calc "$START / $GZ")" "<= 1.2" "$ok"

# --- list latency and throughput ---------------------------------------------------------------
LIST="/package/list?architecture=linux_x86_64"
curl -s "http://127.0.0.1:$MANY_PORT$LIST" > "$W/www/list.json"
echo "  list answer: $(stat -c %s "$W/www/list.json") bytes"
wrk -t1 -c1 -d5s --latency "http://127.0.0.1:$MANY_PORT$LIST" > "$W/wrk1.txt"
MEDIAN=$(median_ms "$W/wrk1.txt")
ok=$(awk -v a="$MEDIAN" 'BEGIN { print (a <= 2) ? 1 : 0 }')
row "/package/list?architecture=... with $COUNT packages, median latency, ms" "$MEDIAN" "<= 2" "$ok"
OURS_RPS=$(wrk -t2 -c16 -d10s "http://127.0.0.1:$MANY_PORT$LIST" | awk '/Requests\/sec/ {print $2}')
NGINX_RPS=$(wrk -t2 -c16 -d10s "http://127.0.0.1:18081/list.json" | awk '/Requests\/sec/ {print $2}')
echo "  list: ours $OURS_RPS req/s, nginx $NGINX_RPS req/s"
ok=$(awk -v a="$OURS_RPS" -v b="$NGINX_RPS" 'BEGIN { print (a / b >= 0.5) ? 1 : 0 }')
row "same list, requests/s with wrk -t2 -c16, ours / nginx (static file)" "$(calc "$OURS_RPS / $NGINX_RPS")" ">= 0.5" "$ok"

# --- a shared server: one busy address, and what metrics cost ---------------------------------
echo "a shared server: 100 clients on one address, 1000 parallel connections, metrics on and off"
source_dir "$W/mib" io.example.mib $((1024 * 1024))
"$PACKAGER" create-package "$W/mib.ampkg" "$W/mib"
mkdir -p "$W/shared"
start_server "$W/shared" "$W/shared.log"
SHARED_PID=$SPID; SHARED_PORT=$SPORT
curl -s -T "$W/mib.ampkg" "http://127.0.0.1:$SHARED_PORT/package/upload" | grep -q '"status":"ok"'
MIB_URL="http://127.0.0.1:$SHARED_PORT/package/download?id=io.example.mib"
CLIENTS=()
t0=$(now)
for i in $(seq 100); do
    ( for _ in 1 2 3 4 5 6 7 8 9 10; do curl -s -o /dev/null -w '%{http_code}\n' "$MIB_URL"; done > "$W/shared/client$i.txt" ) &
    CLIENTS+=($!)
done
wait "${CLIENTS[@]}"
t1=$(now)
FAILED=$(cat "$W"/shared/client*.txt | grep -cv '^200$' || true)
ANSWERED=$(cat "$W"/shared/client*.txt | wc -l)
echo "  100 x 10 downloads of $(stat -c %s "$W/mib.ampkg") bytes: $(calc "$t1 - $t0") s, $ANSWERED answers, $FAILED not 200"
row "100 clients x 10 downloads of 1 MiB from one address, failures" "$FAILED" "0" "$([ "$FAILED" = 0 ] && echo 1 || echo 0)"
row "the same, time, s" "$(calc "$t1 - $t0")" "figure" 1
kill "$SHARED_PID"
mkdir -p "$W/parallel"
start_server "$W/parallel" "$W/parallel.log"
PARALLEL_PID=$SPID
FAILED=$(python3 bench/parallel.py "$SPORT" 1000)
RSS=$(awk '/VmHWM/ {print $2}' "/proc/$PARALLEL_PID/status")
kill "$PARALLEL_PID"
row "1000 parallel connections from one address (GET /hello), failures" "$FAILED" "0" "$([ "$FAILED" = 0 ] && echo 1 || echo 0)"
row "the same, peak RSS, MiB" "$(calc "$RSS / 1024")" "figure" 1
# Latency of the cached list (1000 packages) with metrics (the default) and without,
# interleaved three times; the best median of each.
mkdir -p "$W/d4"
cp -a "$W/d3/.packages" "$W/d4/"
start_server "$W/d4" "$W/d4.log" --no-metrics
NOMETRICS_PORT=$SPORT
best_on=999; best_off=999
for _ in 1 2 3; do
    wrk -t1 -c1 -d3s --latency "http://127.0.0.1:$MANY_PORT$LIST" > "$W/wrk-on.txt"
    wrk -t1 -c1 -d3s --latency "http://127.0.0.1:$NOMETRICS_PORT$LIST" > "$W/wrk-off.txt"
    best_on=$(awk -v a="$best_on" -v b="$(median_ms "$W/wrk-on.txt")" 'BEGIN { print (b < a) ? b : a }')
    best_off=$(awk -v a="$best_off" -v b="$(median_ms "$W/wrk-off.txt")" 'BEGIN { print (b < a) ? b : a }')
done
echo "  list median latency: $best_on ms with metrics, $best_off ms without"
row "list median latency with metrics / without (best of 3 medians)" "$(calc "$best_on / $best_off")" "<= 1.1" "$(awk -v a="$best_on" -v b="$best_off" 'BEGIN { print (a / b <= 1.1) ? 1 : 0 }')"

# --- hostile clients ---------------------------------------------------------------------------
python3 bench/attacks.py "$SERVER" "$W/attacks" | tee "$W/attacks.txt"

echo
echo "Results ($(date -u +%Y-%m-%d), $(nproc) cores, loopback):"
printf '%s\n' "${ROWS[@]}"
grep "^  " "$W/attacks.txt" || true
