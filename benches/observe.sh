#!/usr/bin/env bash
# What observability costs per request: proxy CPU time per request (from /proc) with
#   base  - a baseline revision (default: the commit before metrics), access log off
#   off   - this tree: metrics always on, access_log = "off"
#   json  - this tree: metrics on, JSON access log to a file
# Arrangement: fulcrum with one worker thread pinned to CPU 0; nginx (one worker, a 19-byte
# body) and wrk pinned to CPU 1; 64 keep-alive connections; loopback only. Rounds alternate
# the variants; the table shows medians.
#
#   benches/observe.sh [--rounds N] [--seconds S] [--baseline REV]
#
# Installs nginx and wrk from Debian when missing. Bounded: rounds × variants × seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=5 seconds=10 baseline=af39f2a
while (($#)); do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --baseline) baseline=$2; shift 2 ;;
    *) echo "usage: $0 [--rounds N] [--seconds S] [--baseline REV]" >&2; exit 2 ;;
  esac
done
missing=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v wrk >/dev/null || missing+=(wrk)
if ((${#missing[@]})); then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

cargo build --release -q
cp target/release/fulcrum "$work/fulcrum-head"
if [ ! -x "target/observe-base-$baseline/release/fulcrum" ]; then
  git worktree add -f "$work/base" "$baseline" -q
  CARGO_TARGET_DIR="$PWD/target/observe-base-$baseline" cargo build --release -q --manifest-path "$work/base/Cargo.toml"
  git worktree remove --force "$work/base"
fi
cp "target/observe-base-$baseline/release/fulcrum" "$work/fulcrum-base"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
backend_port=$(free_port)
cat >"$work/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$backend_port;
    location / { return 200 "hello from backend\n"; }
  }
}
EOF
taskset -c 1 "$NGINX" -c "$work/nginx.conf" -p "$work" &
pids+=($!)

config() { # $1 = access_log value (empty: the baseline, which has no such key)
  local port=$2 admin=$3
  cat <<EOF
[server]
listen = ["127.0.0.1:$port"]
admin_listen = "127.0.0.1:$admin"
threads = 1
upgrade_sock = "$work/upgrade-$port.sock"
log_level = "warn"
${1:+access_log = \"$1\"}

[[route]]
name = "bench"
upstream = "pool"

[upstream.pool]
backends = [{ addr = "127.0.0.1:$backend_port" }]
EOF
}

ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

run_variant() { # name binary access_log
  local name=$1 bin=$2 log=$3 port admin pid
  port=$(free_port); admin=$(free_port)
  config "$log" "$port" "$admin" >"$work/$name.toml"
  RUST_LOG=warn taskset -c 0 "$bin" run --config "$work/$name.toml" 2>>"$work/$name.err" &
  pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/" >/dev/null 2>&1 && break; sleep 0.1; done
  taskset -c 1 wrk -t1 -c64 -d2s "http://127.0.0.1:$port/" >/dev/null # warm-up
  read -r u0 s0 < <(ticks "$pid")
  out=$(taskset -c 1 wrk -t1 -c64 -d"${seconds}s" --latency "http://127.0.0.1:$port/")
  read -r u1 s1 < <(ticks "$pid")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  local reqs rps p99
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  python3 - "$name" "$reqs" "$rps" "$p99" "$((u1 - u0))" "$((s1 - s0))" "$hz" >>"$work/results" <<'EOF'
import sys
name, reqs, rps, p99, du, ds, hz = sys.argv[1:]
reqs, du, ds, hz = int(reqs), int(du), int(ds), int(hz)
us = lambda t: t / hz * 1e6 / reqs
print(name, reqs, rps, p99, f"{us(du):.2f}", f"{us(ds):.2f}", f"{us(du + ds):.2f}")
EOF
}

for r in $(seq "$rounds"); do
  run_variant base "$work/fulcrum-base" ""
  run_variant off "$work/fulcrum-head" off
  run_variant json "$work/fulcrum-head" "$work/access.log"
  rm -f "$work/access.log"
  echo "round $r/$rounds done" >&2
done

python3 - "$work/results" "$baseline" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, reqs, rps, p99, u, s, t = line.split()
    rows.setdefault(name, []).append((float(rps), p99, float(u), float(s), float(t)))
def ms(p):
    return float(p[:-2]) if p.endswith("ms") else float(p[:-2]) / 1000 if p.endswith("us") else float(p[:-1]) * 1000
label = {"base": f"baseline {sys.argv[2]} (before metrics), log off",
         "off": "metrics on, access log off", "json": "metrics on, JSON access log to a file"}
base = statistics.median(r[4] for r in rows["base"])
print("| variant | CPU µs/req (user + sys) | × baseline | req/s | p99 |")
print("|---|---|---|---|---|")
for name in ["base", "off", "json"]:
    rs = rows[name]
    t = statistics.median(r[4] for r in rs)
    u = statistics.median(r[2] for r in rs)
    s = statistics.median(r[3] for r in rs)
    rps = statistics.median(r[0] for r in rs)
    p99 = statistics.median(ms(r[1]) for r in rs)
    print(f"| {label[name]} | {t:.1f} ({u:.1f} + {s:.1f}) | {t / base:.2f} | {rps / 1000:.1f} k | {p99:.2f} ms |")
EOF
