#!/usr/bin/env bash
# Instructions per request of a fulcrum binary, counted by callgrind (repeatable: the same
# binary and load give the same count, whatever else the machine is doing).
#
#   benches/callgrind.sh [BINARY] [SECONDS]     (default target/release/fulcrum, 5 s)
#   benches/callgrind.sh --bare BINARY [SECONDS]
#
# --bare measures one of the engine's reference proxies instead (bare_pingora, bare_pingora_tuned,
# bare_core: `BINARY LISTEN BACKEND BACKEND`); with no metrics to read, the requests are the ones
# wrk counts.
#
# The proxy runs fulcrum-full's config from benches/compare.py (10 host+path routes, a rate
# limit that never triggers, least_connections, active health checks, a circuit breaker, JSON
# access log to a file) under `valgrind --tool=callgrind`, in front of two small loopback
# backends answering a 19-byte body. After a warm-up, callgrind counts SECONDS without load (the
# work the process does on its own: health checks, timers), then SECONDS of `wrk -c8 -t1`
# keep-alive GETs; the difference is divided by the requests fulcrum counted
# (fulcrum_requests_total) in the loaded window. Needs valgrind,
# wrk and python3; loopback only, bounded by SECONDS; stops everything it started.
set -euo pipefail
bare=
if [ "${1:-}" = --bare ]; then
  bare=1; shift
  [ -n "${1:-}" ] || { echo "usage: callgrind.sh --bare BINARY [SECONDS]" >&2; exit 2; }
fi
bin=$(realpath "${1:-target/release/fulcrum}")
secs=${2:-5}
for tool in valgrind callgrind_control wrk python3 curl; do
  command -v "$tool" >/dev/null || { echo "callgrind.sh: needs $tool" >&2; exit 1; }
done
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
b1=$(port); b2=$(port); proxy=$(port); admin=$(port)
cat > "$dir/backend.py" <<'PY'
import asyncio, sys
BODY = b"hello from backend\n"
RESP = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
async def serve(r, w):
    try:
        while True:
            await r.readuntil(b"\r\n\r\n")
            w.write(RESP)
            await w.drain()
    except Exception:
        w.close()
async def main():
    servers = [await asyncio.start_server(serve, "127.0.0.1", int(p)) for p in sys.argv[1:]]
    await asyncio.gather(*(s.serve_forever() for s in servers))
asyncio.run(main())
PY
python3 "$dir/backend.py" "$b1" "$b2" & pids+=($!)
{
  printf '[server]\nlisten = ["127.0.0.1:%s"]\nadmin_listen = "127.0.0.1:%s"\nthreads = 1\n' "$proxy" "$admin"
  printf 'upgrade_sock = "%s/upgrade.sock"\nlog_level = "warn"\naccess_log = "%s/access.log"\naccess_log_format = "json"\n' "$dir" "$dir"
  for i in 0 1 2 3 4; do
    for kp in api:/api/ root:/; do
      printf '\n[[route]]\nname = "svc%s-%s"\nhost = "svc%s.bench.test"\npath = "%s"\nupstream = "pool"\n' "$i" "${kp%%:*}" "$i" "${kp#*:}"
      printf 'rate_limit = { rate = 1000000, per = "1s", burst = 1000000, key = "client_ip" }\n'
    done
  done
  printf '\n[upstream.pool]\nbalance = "least_connections"\nbackends = [{ addr = "127.0.0.1:%s" }, { addr = "127.0.0.1:%s" }]\n' "$b1" "$b2"
  printf '\n[upstream.pool.health_check]\npath = "/"\ninterval = "1s"\n\n[upstream.pool.circuit_breaker]\nconsecutive_failures = 5\n'
} > "$dir/fulcrum.toml"
url="http://127.0.0.1:$proxy/api/x"
if [ -n "$bare" ]; then
  valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" "$bin" "127.0.0.1:$proxy" "127.0.0.1:$b1" "127.0.0.1:$b2" 2> "$dir/valgrind.log" & vg=$!
  ready() { curl -sf -H "Host: svc3.bench.test" "$url" >/dev/null 2>&1; }
else
  valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" "$bin" run "$dir/fulcrum.toml" 2> "$dir/valgrind.log" & vg=$!
  ready() { curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1; }
fi
pids+=("$vg")
for _ in $(seq 300); do
  ready && break
  kill -0 "$vg" 2>/dev/null || { echo "callgrind.sh: $bin exited; see its output:" >&2; cat "$dir/valgrind.log" >&2; exit 1; }
  sleep 0.2
done
wrk -c8 -t1 -d2s -H "Host: svc3.bench.test" "$url" >/dev/null
count() { [ -n "$bare" ] && return; curl -sf "http://127.0.0.1:$admin/metrics" | awk '/^fulcrum_requests_total\{/ {s += $NF} END {print s + 0}'; }
# Instructions counted from a zeroing to a dump, in dump file number $1.
window() {
  callgrind_control -z "$vg" >/dev/null 2>&1
  "${@:2}" > "$dir/window.out" || { echo "callgrind.sh: $2 failed" >&2; exit 1; }
  callgrind_control -d "$vg" >/dev/null 2>&1
  for _ in $(seq 50); do [ -s "$dir/cg.out.$1" ] && break; sleep 0.1; done
  awk '/^totals:/ {t = $2} /^summary:/ {s = $2} END {print (t ? t : s) + 0}' "$dir/cg.out.$1"
}
# What the process spends without requests (health checks, timers, the access-log writer's
# ticks) over the same time, taken off the loaded window's count.
idle=$(window 1 sleep "$secs")
before=$(count)
load=$(window 2 wrk -c8 -t1 -d"${secs}s" -H "Host: svc3.bench.test" "$url")
after=$(count)
if [ -n "$bare" ]; then
  requests=$(awk '/ requests in / {print $1}' "$dir/window.out")
else
  requests=$((after - before))
fi
[ "${requests:-0}" -gt 0 ] 2>/dev/null || { echo "callgrind.sh: no requests counted in the window" >&2; exit 1; }
echo "$(basename "$bin"): $requests requests in ${secs}s; $load instructions, $idle of them idle-time work; $(((load - idle) / requests)) instructions/request"
