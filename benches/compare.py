#!/usr/bin/env python3
"""Side-by-side cost of fulcrum, nginx, HAProxy and a bare pingora proxy on loopback.

Arrangement: each proxy runs one worker pinned to --proxy-cpus (default CPU 0); wrk and two
nginx backends share --load-cpus (default CPU 1); every proxy gets the same backends, the same
request and the same connection count. Rounds alternate the proxies; the tables show medians
of each figure, and ratios computed within a round before taking the median.

Scenarios:
  keepalive      GET of a 19-byte body over 64 keep-alive connections
  rate           keepalive at a fixed rate: half of nginx's keepalive requests/s in the same round
                 (or --rate), sent by oha with latency correction, so p99 counts from when each
                 request was due; req/s shows the rate reached
  close          the same with a new client connection per request (Connection: close)
  16k            GET of a 16 KiB body over 64 keep-alive connections
  idle           RSS of the proxy before and after 10 000 idle keep-alive client connections,
                 each of which has served one request
  idle-new       the same with connections that have sent nothing yet
  tls-keepalive  keepalive over TLS (not in the default list)
  tls-close      close over TLS: a new connection and a full handshake per request, so its
                 requests/s are handshakes/s (not in the default list)

TLS: only client -> proxy is TLS; the backends stay plain HTTP. One certificate is made per run
with openssl (ECDSA P-256, SANs HOST and 127.0.0.1) and every TLS row serves it: nginx
(`listen ... ssl`, ssl_protocols TLSv1.2 TLSv1.3, session cache and tickets at nginx's
defaults), haproxy (`bind ... ssl crt`, ssl-min-ver TLSv1.2, its defaults otherwise) and fulcrum
(a [[server.tls]] listener, min_version 1.2, its certificate also the default one). wrk
connects to 127.0.0.1, so its SNI is "127.0.0.1" (an IP SAN of the certificate); it negotiates
TLS 1.3 and, offering no ALPN, HTTP/1.1. wrk keeps a connection's TLS session across its
reconnects (SSL_clear keeps it) and would resume it on each new connection; tls-close preloads
into wrk a shim, compiled here with cc, that drops the session first, so every request pays a
full handshake. wrk's latency starts at the request, after the handshake; on a small machine
wrk's own handshakes can bound tls-close's requests/s, and then the proxy's CPU per request is
the figure to compare. direct, pingora, pingora-tuned, pingora-core and a fulcrum@REV whose `fulcrum check`
rejects [[server.tls]] sit out the TLS scenarios, with a note.

Rows: direct (wrk straight to a backend: the ceiling), nginx (proxy_pass, keepalive pool),
haproxy (http-reuse always), pingora (benches/bare_pingora.rs: the engine alone, with its
defaults), pingora-tuned (the same with fulcrum's engine settings: mimalloc, no L4 read buffer
on the listener), pingora-core (benches/bare_core.rs: a request loop of its own on pingora-core
alone, with pingora-tuned's settings; the ceiling of issue 23), pingap (Pingap 0.13.1, the closest peer on the same engine, on pingora 0.8 with OpenSSL: one
server, one location, both backends, one thread, no access log; in a default run only when its
binary is found, built once with `cargo install` when asked for by name), fulcrum (one route, round-robin, access log off) and fulcrum-full (10
host+path routes, least_connections, active health checks, circuit breaker, a rate limit that
never triggers, JSON access log to a file; metrics are always on). Each --baseline REV (it may
be given several times) adds fulcrum@REV and fulcrum-full@REV built from another revision; each
--build LABEL=DIR adds the same rows (and pingora@LABEL, pingora-tuned@LABEL, pingora-core@LABEL
where DIR has the bare proxies) from binaries built elsewhere, e.g. with another release profile.

oha (the fixed-rate client) is `oha` on PATH or --oha, else built once with `cargo install oha
--version OHA_VERSION --locked` into target/compare-tools (a few minutes).

Installs nginx, haproxy and wrk (and openssl and gcc for the TLS scenarios, protobuf-compiler to
build pingap) from Debian when they are missing. Bounded: every run lasts --seconds (plus a one-second warm-up), and every
process it starts is stopped at the end.

  benches/compare.py [--rounds N] [--seconds S]
                     [--scenarios keepalive,rate,close,16k,idle,idle-new,tls-keepalive,tls-close]
                     [--rate R] [--oha PATH]
                     [--proxies direct,nginx,...] [--baseline REV ...] [--build LABEL=DIR ...]
                     [--pingap PATH] [--connections C]
                     [--profile PROXY] [--keep]
"""

import argparse
import asyncio
import os
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HZ = os.sysconf("SC_CLK_TCK")
HOST = "svc3.bench.test"  # every request carries it; fulcrum-full routes on it
PATHS = {"keepalive": "/api/items", "rate": "/api/items", "close": "/api/items", "16k": "/16k", "tls-keepalive": "/api/items", "tls-close": "/api/items"}
DEFAULT_SCENARIOS = "keepalive,rate,close,16k,idle,idle-new"
ALL_SCENARIOS = ["keepalive", "rate", "close", "16k", "idle", "idle-new", "tls-keepalive", "tls-close"]
ALL_PROXIES = ["direct", "nginx", "haproxy", "pingora", "pingora-tuned", "pingora-core", "pingap", "fulcrum", "fulcrum-full"]
# The engine's reference rows: the example each is built from.
BARE = {"pingora": "bare_pingora", "pingora-tuned": "bare_pingora_tuned", "pingora-core": "bare_core"}
OHA_VERSION = "1.16.0"  # the fixed-rate client (its -q with --latency-correction)
PINGAP_VERSION = "0.13.1"  # the version issue 23 names (pingora 0.8, OpenSSL); it needs rustc >= 1.88
IDLE_CONNECTIONS = 10_000
NOFILE = 65536  # raised to the hard limit in main(); every proxy inherits it

# Preloaded into wrk for tls-close: wrk reconnects with SSL_shutdown + SSL_clear, and SSL_clear
# keeps the session, so each new connection would resume it. Dropping it makes every handshake full.
NO_RESUME_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>

int SSL_clear(void *ssl) {
    static int (*clear)(void *);
    static int (*set_session)(void *, void *);
    if (!clear) {
        clear = (int (*)(void *))dlsym(RTLD_NEXT, "SSL_clear");
        set_session = (int (*)(void *, void *))dlsym(RTLD_NEXT, "SSL_set_session");
    }
    set_session(ssl, NULL);
    return clear(ssl);
}
"""


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=int, default=6)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--scenarios", default=DEFAULT_SCENARIOS)
    p.add_argument("--rate", type=int, help="requests/s of the rate scenario (default: half of nginx's keepalive "
                                            "requests/s in the same round)")
    p.add_argument("--oha", metavar="PATH", help="the oha binary (default: `oha` on PATH, else target/compare-tools/bin/oha, "
                                                 f"installed there with `cargo install oha --version {OHA_VERSION} --locked` when missing)")
    p.add_argument("--proxies", default=None,
                   help="comma-separated rows (default: all; pingap only when its binary is found, see --pingap)")
    p.add_argument("--baseline", action="append", default=[], help="git revision of fulcrum to compare with (repeatable)")
    p.add_argument("--build", action="append", default=[], metavar="LABEL=DIR",
                   help="a directory of prebuilt binaries (fulcrum, and optionally bare_pingora, bare_pingora_tuned and "
                        "bare_core) to compare as fulcrum@LABEL, fulcrum-full@LABEL, pingora@LABEL, pingora-tuned@LABEL, "
                        "pingora-core@LABEL (repeatable)")
    p.add_argument("--pingap", metavar="PATH", help=f"the pingap binary (default: `pingap` on PATH, else target/compare-tools/bin/pingap, "
                                                    f"installed there with `cargo install pingap --version {PINGAP_VERSION} --locked` when missing)")
    p.add_argument("--proxy-cpus", default="0")
    p.add_argument("--load-cpus", default="1")
    p.add_argument("--keep", action="store_true", help="keep the work directory (configs, logs)")
    p.add_argument("--profile", metavar="PROXY", help="record `perf record -e cpu-clock -g` of this proxy's runs into the work directory (implies --keep)")
    return p.parse_args()


def install_missing(profile, tls, pingap):
    need = {"nginx": "nginx-light", "haproxy": "haproxy", "wrk": "wrk", "cmake": "cmake"}
    if pingap:
        need["protoc"] = "protobuf-compiler"  # pingap's build needs it
    if profile:
        need["perf"] = "linux-perf"
    if tls:
        need.update({"openssl": "openssl", "cc": "gcc"})
    missing = [pkg for cmd, pkg in need.items() if not shutil.which(cmd) and not os.path.exists(f"/usr/sbin/{cmd}")]
    if missing:
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", "--no-install-recommends"] + missing, check=True, env=env)


def tool(name):
    return shutil.which(name) or f"/usr/sbin/{name}"


def builds(args):
    """--build LABEL=DIR pairs, checked: each label once, none a --baseline revision."""
    pairs = []
    for spec in args.build:
        label, sep, directory = spec.partition("=")
        if not sep or not label or not os.path.exists(os.path.join(directory, "fulcrum")):
            sys.exit(f"--build {spec!r}: expected LABEL=DIR with DIR/fulcrum")
        if label in [l for l, _ in pairs] or label in args.baseline:
            sys.exit(f"--build {spec!r}: the label {label!r} is already taken")
        pairs.append((label, os.path.abspath(directory)))
    return pairs


def bare(directory, example):
    """The bare proxy `example` in a --build directory: DIR/NAME, or DIR/examples/NAME (a cargo
    target/release directory); None when it has none."""
    for path in (os.path.join(directory, example), os.path.join(directory, "examples", example)):
        if os.path.exists(path):
            return path
    return None


def pingap_binary(args):
    """The pingap binary already there: --pingap, on PATH, or built before into
    target/compare-tools; None when none is."""
    if args.pingap:
        return args.pingap
    built = os.path.join(ROOT, "target", "compare-tools", "bin", "pingap")
    return shutil.which("pingap") or (built if os.path.exists(built) else None)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout}s")


def wait_ok(port, tls=None, timeout=30.0):
    """Until a request through the proxy gets a 200 (health checks may still be starting). With
    tls (an SSLContext), over TLS, and returns the protocol and cipher negotiated."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as raw, \
                    (tls.wrap_socket(raw, server_hostname="127.0.0.1") if tls else raw) as s:
                s.sendall(f"GET /api/items HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return f"{s.version()} {s.cipher()[0]}" if tls else None
        except ssl.SSLCertVerificationError:
            raise
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"no 200 through port {port} after {timeout}s")


def family(pid):
    """The process and its children (nginx's workers, haproxy's master-worker)."""
    pids = [pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    pids.append(int(entry))
            except OSError:
                pass
    return pids


def cpu_ticks(pid):
    user = sys_ = 0
    for p in family(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            user += int(fields[11])
            sys_ += int(fields[12])
        except OSError:
            pass
    return user, sys_


def rss_kib(pid):
    total = 0
    for p in family(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = tempfile.mkdtemp(prefix="fulcrum-compare-")
        self.procs = []
        self.backends = [free_port(), free_port()]
        self.client_tls = None  # an SSLContext that trusts the run's certificate, once made
        self.negotiated = {}  # proxy -> "TLSv1.3 TLS_AES_256_GCM_SHA384", as wait_ok saw it

    def start(self, argv, cpus, log_name, **kw):
        log = open(os.path.join(self.work, log_name), "ab")
        proc = subprocess.Popen(["taskset", "-c", cpus] + argv, stdout=log, stderr=log, start_new_session=True, **kw)
        self.procs.append(proc)
        return proc

    def stop(self, proc):
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()
        if proc in self.procs:
            self.procs.remove(proc)

    def close(self):
        for proc in list(self.procs):
            self.stop(proc)
        if self.args.keep:
            print(f"work directory kept: {self.work}", file=sys.stderr)
        else:
            shutil.rmtree(self.work, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.work, name)

    # --- binaries -------------------------------------------------------------------------

    def build(self):
        examples = [a for example in BARE.values() for a in ("--example", example)]
        subprocess.run(["cargo", "build", "--release", "-q", "--bin", "fulcrum"] + examples, cwd=ROOT, check=True)
        self.fulcrum = {"": os.path.join(ROOT, "target/release/fulcrum")}
        self.pingora = {name: os.path.join(ROOT, "target/release/examples", example) for name, example in BARE.items()}
        for label, directory in builds(self.args):
            self.fulcrum["@" + label] = os.path.join(directory, "fulcrum")
            for name, example in BARE.items():
                if bare(directory, example):
                    self.pingora[f"{name}@{label}"] = bare(directory, example)
        # Baselines share one target directory (only fulcrum itself recompiles) and keep
        # their binaries by commit.
        target = os.path.join(ROOT, "target", "compare-base")
        for rev in self.args.baseline:
            sha = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()
            binary = os.path.join(target, f"fulcrum-{sha}")
            if not os.path.exists(binary):
                tree = self.path(f"tree-{sha}")
                subprocess.run(["git", "worktree", "add", "-f", "-q", tree, sha], cwd=ROOT, check=True)
                try:
                    subprocess.run(["cargo", "build", "--release", "-q", "--bin", "fulcrum"], cwd=tree, check=True, env=dict(os.environ, CARGO_TARGET_DIR=target))
                    shutil.copy(os.path.join(target, "release", "fulcrum"), binary)
                finally:
                    subprocess.run(["git", "worktree", "remove", "--force", tree], cwd=ROOT, check=True)
            self.fulcrum["@" + rev] = binary
        if "pingap" in self.args.proxies.split(","):
            self.pingap = self.find_pingap()
        if "rate" in self.args.scenarios.split(","):
            self.oha = self.find_oha()

    def find_oha(self):
        """oha: --oha, on PATH, or built once into target/compare-tools."""
        root = os.path.join(ROOT, "target", "compare-tools")
        built = os.path.join(root, "bin", "oha")
        found = self.args.oha or shutil.which("oha") or (built if os.path.exists(built) else None)
        if found:
            return found
        print(f"building oha {OHA_VERSION} into {root} (once)", file=sys.stderr)
        subprocess.run(["cargo", "install", "-q", "oha", "--version", OHA_VERSION, "--locked", "--root", root,
                        "--target-dir", os.path.join(root, "build")], check=True)
        return built

    def find_pingap(self):
        """The pingap binary (see pingap_binary), else built once into target/compare-tools (a
        long build: about 16 minutes of two cores); only when pingap was asked for by name."""
        found = pingap_binary(self.args)
        if found:
            return found
        root = os.path.join(ROOT, "target", "compare-tools")
        print(f"building pingap {PINGAP_VERSION} into {root} (once)", file=sys.stderr)
        subprocess.run(["cargo", "install", "-q", "pingap", "--version", PINGAP_VERSION, "--locked", "--root", root,
                        "--target-dir", os.path.join(root, "build")], check=True)
        return os.path.join(root, "bin", "pingap")

    def make_tls(self):
        """The run's certificate (cert.pem, key.pem, and both in cert-key.pem for haproxy) and the
        shim that keeps wrk from resuming sessions."""
        cert, key = self.path("cert.pem"), self.path("key.pem")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
             "-subj", f"/CN={HOST}", "-addext", f"subjectAltName=DNS:{HOST},IP:127.0.0.1", "-keyout", key, "-out", cert],
            check=True, capture_output=True,
        )
        with open(self.path("cert-key.pem"), "w") as f:
            f.write(open(cert).read() + open(key).read())
        with open(self.path("no_resume.c"), "w") as f:
            f.write(NO_RESUME_C)
        subprocess.run([tool("cc"), "-O2", "-shared", "-fPIC", "-o", self.path("no_resume.so"), self.path("no_resume.c"), "-ldl"], check=True)
        self.client_tls = ssl.create_default_context(cafile=cert)

    def why_no_tls(self, name):
        """None if this proxy row takes the TLS scenarios (nginx, haproxy, a fulcrum binary whose
        `check` accepts its config with a [[server.tls]] listener), else why not."""
        if not name.startswith("fulcrum"):
            return None if name in ("nginx", "haproxy") else "no TLS listener in this harness"
        rev = name[name.index("@"):] if "@" in name else ""
        conf = self.path(f"{name}-tls-probe.toml")
        with open(conf, "w") as f:
            f.write(self.fulcrum_config(free_port(), name.startswith("fulcrum-full"), free_port()))
        out = subprocess.run([self.fulcrum[rev], "check", conf], capture_output=True, text=True)
        if out.returncode == 0:
            return None
        first = next((l for l in out.stderr.splitlines() if l.strip()), f"exit status {out.returncode}")
        return f"`fulcrum check` rejects its config with [[server.tls]]: {first.split(', expected')[0]}"

    # --- backends -------------------------------------------------------------------------

    def start_backends(self):
        www = self.path("www")
        os.makedirs(www)
        os.chmod(self.work, 0o755)  # nginx's workers (nobody) read the 16 KiB file
        with open(os.path.join(www, "16k"), "wb") as f:
            f.write(b"x" * 16383 + b"\n")
        servers = "".join(
            f"""
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{ return 200 "hello from backend\\n"; }}
    location = /16k {{ root {www}; }}
  }}"""
            for port in self.backends
        )
        conf = self.path("backends.conf")
        with open(conf, "w") as f:
            f.write(f"""worker_processes 1;
daemon off;
pid {self.path("backends.pid")};
error_log {self.path("backends-error.log")};
worker_rlimit_nofile {NOFILE};
events {{ worker_connections 20000; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  default_type text/plain;{servers}
}}
""")
        proc = self.start([tool("nginx"), "-c", conf, "-p", self.work], self.args.load_cpus, "backends.log")
        for port in self.backends:
            wait_port(port, proc)

    # --- proxies --------------------------------------------------------------------------

    def start_proxy(self, name, tls=False):
        """Starts one proxy on a fresh port; returns (process, port). With tls, it also listens
        with TLS on a second fresh port, and that is the port returned."""
        port, cpus = free_port(), self.args.proxy_cpus
        tls_port = free_port() if tls else None
        b1, b2 = (f"127.0.0.1:{p}" for p in self.backends)
        if name == "nginx":
            tls_listen = f"""
    listen 127.0.0.1:{tls_port} ssl backlog=4096;
    ssl_certificate {self.path("cert.pem")};
    ssl_certificate_key {self.path("key.pem")};
    ssl_protocols TLSv1.2 TLSv1.3;""" if tls else ""
            conf = self.path("nginx-proxy.conf")
            with open(conf, "w") as f:
                f.write(f"""worker_processes 1;
daemon off;
pid {self.path(f"nginx-{port}.pid")};
error_log {self.path("nginx-proxy-error.log")};
worker_rlimit_nofile {NOFILE};
events {{ worker_connections 20000; }}
http {{
  access_log off;
  upstream backends {{ server {b1}; server {b2}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;{tls_listen}
    location / {{
      proxy_pass http://backends;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
""")
            proc = self.start([tool("nginx"), "-c", conf, "-p", self.work], cpus, "nginx-proxy.log")
        elif name == "haproxy":
            tls_bind = f"\n  bind 127.0.0.1:{tls_port} ssl crt {self.path('cert-key.pem')} ssl-min-ver TLSv1.2" if tls else ""
            conf = self.path("haproxy.cfg")
            with open(conf, "w") as f:
                f.write(f"""global
  nbthread 1
  no strict-limits
  maxconn {IDLE_CONNECTIONS + 200}
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
  http-reuse always
frontend fe
  bind 127.0.0.1:{port}{tls_bind}
  default_backend be
backend be
  balance roundrobin
  server b1 {b1}
  server b2 {b2}
""")
            proc = self.start([tool("haproxy"), "-f", conf], cpus, "haproxy.log")
        elif name in self.pingora:
            proc = self.start([self.pingora[name], f"127.0.0.1:{port}", b1, b2], cpus, f"{name}.log")
        elif name == "pingap":
            # One server, one thread, one location for every request, no access log (pingap logs
            # none unless asked), the two backends round-robin (its default) over its pool.
            conf = self.path(f"pingap-{port}.toml")
            with open(conf, "w") as f:
                f.write(f"""[basic]
pid_file = "{self.path(f"pingap-{port}.pid")}"
upgrade_sock = "{self.path(f"pingap-{port}.sock")}"
threads = 1
log_level = "warn"

[upstreams.backends]
addrs = ["{b1}", "{b2}"]

[locations.all]
upstream = "backends"

[servers.bench]
addr = "127.0.0.1:{port}"
locations = ["all"]
threads = 1
""")
            proc = self.start([self.pingap, "-c", conf], cpus, "pingap.log")
        elif name.startswith("fulcrum"):
            full = name.startswith("fulcrum-full")
            rev = name[name.index("@"):] if "@" in name else ""
            conf = self.path(f"{name}-{port}.toml")
            with open(conf, "w") as f:
                f.write(self.fulcrum_config(port, full, tls_port))
            env = dict(os.environ, RUST_LOG="warn")
            proc = self.start([self.fulcrum[rev], "run", "--config", conf], cpus, f"{name}.log", env=env)
        else:
            raise ValueError(name)
        wait_port(port, proc)
        if not tls:
            wait_ok(port)
            return proc, port
        wait_port(tls_port, proc)
        self.negotiated[name] = wait_ok(tls_port, self.client_tls)
        return proc, tls_port

    def fulcrum_config(self, port, full, tls_port=None):
        b1, b2 = (f"127.0.0.1:{p}" for p in self.backends)
        server = f"""[server]
listen = ["127.0.0.1:{port}"]
admin_listen = "127.0.0.1:{free_port()}"
threads = 1
upgrade_sock = "{self.path(f"upgrade-{port}.sock")}"
log_level = "warn"
"""
        server += f"""access_log = "{self.path(f"access-{port}.log")}"
access_log_format = "json"
""" if full else 'access_log = "off"\n'
        if tls_port:
            cert = self.path("cert.pem")
            server += f"""
[[server.tls]]
listen = "127.0.0.1:{tls_port}"
certificates = [{{ cert = "{cert}", key = "{self.path("key.pem")}" }}]
default_certificate = "{cert}"
http2 = true
min_version = "1.2"
"""
        if not full:
            return server + f"""
[[route]]
name = "one"
upstream = "pool"

[upstream.pool]
backends = [{{ addr = "{b1}" }}, {{ addr = "{b2}" }}]
"""
        routes = "".join(
            f"""
[[route]]
name = "svc{i}-{kind}"
host = "svc{i}.bench.test"
path = "{path}"
upstream = "pool"
rate_limit = {{ rate = 1000000, per = "1s", burst = 1000000, key = "client_ip" }}
"""
            for i in range(5)
            for kind, path in (("api", "/api/"), ("root", "/"))
        )
        return server + f"""{routes}
[upstream.pool]
balance = "least_connections"
backends = [{{ addr = "{b1}" }}, {{ addr = "{b2}" }}]

[upstream.pool.health_check]
path = "/"
interval = "1s"

[upstream.pool.circuit_breaker]
consecutive_failures = 5
"""

    # --- load -----------------------------------------------------------------------------

    def wrk(self, port, scenario, seconds):
        argv = ["taskset", "-c", self.args.load_cpus, "wrk", "-t1", f"-c{self.args.connections}", f"-d{seconds}s", "--latency", "-H", f"Host: {HOST}"]
        env = None
        if scenario in ("close", "tls-close"):
            argv += ["-H", "Connection: close"]
        if scenario == "tls-close":
            env = dict(os.environ, LD_PRELOAD=self.path("no_resume.so"))
        scheme = "https" if scenario.startswith("tls-") else "http"
        argv.append(f"{scheme}://127.0.0.1:{port}{PATHS[scenario]}")
        return subprocess.run(argv, check=True, capture_output=True, text=True, env=env).stdout

    def fixed_rate(self, port, rate, seconds):
        """A fixed-rate run: rate requests/s over the usual connections; latency from when each
        request was due (--latency-correction), so a stall counts for every request it delays.
        -w lets the requests in flight at the end finish instead of counting them as errors."""
        argv = ["taskset", "-c", self.args.load_cpus, self.oha, "-z", f"{seconds}s", "-c", str(self.args.connections),
                "-q", str(rate), "--latency-correction", "-w", "--no-tui", "--output-format", "json", "-H", f"Host: {HOST}",
                f"http://127.0.0.1:{port}{PATHS['rate']}"]
        return subprocess.run(argv, check=True, capture_output=True, text=True).stdout

    def measure(self, name, scenario, rate=None):
        if name == "direct":
            proc, port = None, self.backends[0]
        else:
            proc, port = self.start_proxy(name, tls=scenario.startswith("tls-"))
        perf = None
        try:
            self.wrk(port, scenario, 1)  # warm-up: pools, caches
            if proc and self.args.profile == name:
                data = self.path(f"perf-{name}-{scenario}-{port}.data")
                perf = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-g", "-o", data, "-p", ",".join(map(str, family(proc.pid)))], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            before = cpu_ticks(proc.pid) if proc else (0, 0)
            if scenario == "rate":
                out = self.fixed_rate(port, rate, self.args.seconds)
            else:
                out = self.wrk(port, scenario, self.args.seconds)
            after = cpu_ticks(proc.pid) if proc else (0, 0)
        finally:
            if perf:
                perf.send_signal(signal.SIGINT)
                perf.wait()
            if proc:
                self.stop(proc)
        row = parse_oha(out, rate) if scenario == "rate" else parse_wrk(out)
        if proc and row.get("requests"):
            row["user"] = (after[0] - before[0]) / HZ * 1e6 / row["requests"]
            row["sys"] = (after[1] - before[1]) / HZ * 1e6 / row["requests"]
            row["cpu"] = row["user"] + row["sys"]
        return row

    def measure_idle(self, name, served):
        """RSS with IDLE_CONNECTIONS idle client connections: each has served one request when
        served, else has sent nothing."""
        proc, port = self.start_proxy(name)
        try:
            self.wrk(port, "keepalive", 1)
            time.sleep(0.5)
            before = rss_kib(proc.pid)
            held, after = asyncio.run(hold_idle(port, IDLE_CONNECTIONS, lambda: rss_kib(proc.pid), served))
        finally:
            self.stop(proc)
        return {"before": before, "after": after, "held": held}


def parse_wrk(out):
    row = {"errors": 0}
    for line in out.splitlines():
        f = line.split()
        if "requests in" in line:
            row["requests"] = int(f[0])
        elif line.startswith("Requests/sec:"):
            row["rps"] = float(f[1])
        elif f and f[0] == "50%":
            row["p50"] = to_ms(f[1])
        elif f and f[0] == "99%":
            row["p99"] = to_ms(f[1])
        elif line.startswith("  Non-2xx or 3xx responses:"):
            row["errors"] += int(f[-1])
        elif line.startswith("  Socket errors:"):
            row["errors"] += sum(int(x.rstrip(",")) for x in f[3::2])
    return row


def parse_oha(out, rate):
    """oha's JSON summary as a row like parse_wrk's; "rate" is the rate asked for."""
    import json
    doc = json.loads(out)
    codes = {int(k): v for k, v in doc.get("statusCodeDistribution", {}).items()}
    failed = sum(doc.get("errorDistribution", {}).values())
    answered = sum(codes.values())
    percentiles = doc.get("latencyPercentiles", {})

    def ms(key):  # None when nothing was answered
        return percentiles[key] * 1e3 if percentiles.get(key) is not None else float("nan")

    return {
        "requests": answered,
        # requestsPerSec counts failed requests too
        "rps": answered / doc["summary"]["total"] if doc["summary"].get("total") else 0.0,
        "p50": ms("p50"),
        "p99": ms("p99"),
        "errors": failed + sum(v for k, v in codes.items() if k >= 400),
        "rate": rate,
    }


def to_ms(s):
    for unit, scale in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if s.endswith(unit):
            return float(s[: -len(unit)]) * scale
    raise ValueError(s)


async def hold_idle(port, n, measure, served=True):
    """Opens n client connections, sends one request on each (when served) and keeps them open
    and idle; then, with every one still open, calls measure(). Returns (the connections the
    proxy kept open, what measure returned)."""
    request = f"GET /api/items HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
    gate = asyncio.Semaphore(200)
    conns = []

    async def one():
        async with gate:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            if not served:
                conns.append((reader, writer))
                return
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:"))
            await reader.readexactly(length)
            conns.append((reader, writer))

    results = await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)
    await asyncio.sleep(1.0)  # the proxy settles; a connection it closed shows as EOF by now
    held = sum(1 for reader, _ in conns if not reader.at_eof())
    value = measure()
    for _, writer in conns:
        writer.close()
    errors = [r for r in results if isinstance(r, Exception)]
    if errors:
        print(f"  {len(errors)} idle connections failed: {errors[0]!r}", file=sys.stderr)
    return held, value


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def print_load_table(scenario, rows, proxies, note=None):
    """rows[proxy] = list of per-round dicts; ratios are taken within each round. note, if any,
    is printed under the table."""
    title = {
        "keepalive": "keep-alive GET, 19-byte body",
        "rate": "keep-alive GET, 19-byte body, at a fixed rate",
        "close": "new connection per request",
        "16k": "keep-alive GET, 16 KiB body",
        "tls-keepalive": "TLS keep-alive GET, 19-byte body",
        "tls-close": "TLS new connection and full handshake per request (req/s = handshakes/s)",
    }[scenario]
    print(f"\n### {scenario}: {title}\n")
    print("| proxy | CPU µs/req (user + sys) | × nginx | × pingora | × pingora-tuned | × pingap | req/s | × nginx | p50 | p99 | × nginx | errors |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")

    def ratio(name, key, ref):
        if ref not in rows or name not in rows:
            return "–"
        pairs = [a[key] / b[key] for a, b in zip(rows[name], rows[ref]) if key in a and key in b and b[key]]
        return f"{median(pairs):.2f}" if pairs else "–"

    for name in proxies:
        rs = rows.get(name)
        if not rs:
            continue
        if "cpu" in rs[0]:
            cpu = f"{median([r['cpu'] for r in rs]):.1f} ({median([r['user'] for r in rs]):.1f} + {median([r['sys'] for r in rs]):.1f})"
            cpu_n, cpu_p, cpu_t, cpu_g = (ratio(name, "cpu", ref) for ref in ("nginx", "pingora", "pingora-tuned", "pingap"))
        else:
            cpu, cpu_n, cpu_p, cpu_t, cpu_g = "–", "–", "–", "–", "–"
        rps = median([r["rps"] for r in rs])
        print(
            f"| {name} | {cpu} | {cpu_n} | {cpu_p} | {cpu_t} | {cpu_g} | {rps / 1000:.1f} k | {ratio(name, 'rps', 'nginx')} "
            f"| {median([r['p50'] for r in rs]):.2f} ms | {median([r['p99'] for r in rs]):.2f} ms | {ratio(name, 'p99', 'nginx')} "
            f"| {sum(r['errors'] for r in rs)} |"
        )
    if note:
        print(f"\n{note}")


def print_idle_table(scenario, rows, proxies):
    state = "that have each served one request" if scenario == "idle" else "that have sent nothing yet"
    print(f"\n### {scenario}: RSS with {IDLE_CONNECTIONS} idle keep-alive client connections {state}\n")
    print("| proxy | RSS before | RSS with connections | KiB per connection | × nginx | connections held |")
    print("|---|---|---|---|---|---|")
    nginx = median([r["after"] for r in rows["nginx"]]) if "nginx" in rows else None
    for name in proxies:
        rs = rows.get(name)
        if not rs:
            continue
        before, after = median([r["before"] for r in rs]), median([r["after"] for r in rs])
        held = min(r["held"] for r in rs)
        per = (after - before) / held if held else float("nan")
        ratio = f"{after / nginx:.2f}" if nginx else "–"
        print(f"| {name} | {before / 1024:.1f} MiB | {after / 1024:.1f} MiB | {per:.1f} | {ratio} | {held} |")


def describe_machine():
    model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown CPU")
    kernel = os.uname().release
    versions = []
    for argv in ([tool("nginx"), "-v"], [tool("haproxy"), "-v"]):
        out = subprocess.run(argv, capture_output=True, text=True)
        versions.append((out.stdout + out.stderr).splitlines()[0])
    return f"{os.cpu_count()} CPUs ({model}), Linux {kernel}; {'; '.join(versions)}"


def main():
    args = parse_args()
    if args.proxies is None:
        # Pingap takes a long build: a default run compares it only when it is already there.
        args.proxies = ",".join(p for p in ALL_PROXIES if p != "pingap" or pingap_binary(args))
    args.keep = args.keep or bool(args.profile)
    scenarios = args.scenarios.split(",")
    proxies = args.proxies.split(",")
    for s in scenarios:
        if s not in ALL_SCENARIOS:
            sys.exit(f"unknown scenario {s!r}; known: {', '.join(ALL_SCENARIOS)}")
    for p in proxies:
        if p not in ALL_PROXIES:
            sys.exit(f"unknown proxy {p!r}; known: {', '.join(ALL_PROXIES)}")
    global NOFILE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    NOFILE = 65536 if hard == resource.RLIM_INFINITY else min(65536, hard)
    if args.rate is not None and args.rate <= 0:
        sys.exit(f"--rate {args.rate}: expected a positive number of requests per second")
    if "rate" in scenarios and not args.rate and ("nginx" not in proxies or "keepalive" not in scenarios[: scenarios.index("rate")]):
        if args.scenarios != DEFAULT_SCENARIOS:
            sys.exit("the rate scenario needs --rate, or nginx among the proxies and keepalive before it in --scenarios")
        print("note: the rate scenario is left out: it needs --rate, or nginx among the proxies", file=sys.stderr)
        scenarios.remove("rate")
        args.scenarios = ",".join(scenarios)
    if NOFILE < IDLE_CONNECTIONS + 1000 and ("idle" in scenarios or "idle-new" in scenarios):
        sys.exit(f"the idle scenario needs {IDLE_CONNECTIONS + 1000} file descriptors; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, hard))

    tls = any(s.startswith("tls-") for s in scenarios)
    install_missing(args.profile, tls, "pingap" in proxies and not pingap_binary(args))
    bench = Bench(args)
    for rev in args.baseline:
        proxies += [p + "@" + rev for p in ("fulcrum", "fulcrum-full") if p in proxies]
    for label, directory in builds(args):
        proxies += [f"{p}@{label}" for p in BARE if p in proxies and bare(directory, BARE[p])]
        proxies += [f"{p}@{label}" for p in ("fulcrum", "fulcrum-full") if p in proxies]
    try:
        bench.build()
        no_tls = set()
        if tls:
            bench.make_tls()
            for p in proxies:
                why = bench.why_no_tls(p)
                if why:
                    no_tls.add(p)
                    print(f"note: {p} is left out of the TLS scenarios: {why}", file=sys.stderr)
        bench.start_backends()
        results = {s: {} for s in scenarios}
        for r in range(args.rounds):
            for s in scenarios:
                for p in proxies:
                    if s.startswith("tls-") and p in no_tls:
                        continue
                    if s in ("idle", "idle-new"):
                        if p != "direct":
                            results[s].setdefault(p, []).append(bench.measure_idle(p, s == "idle"))
                    elif s == "rate":
                        rate = args.rate or int(results["keepalive"]["nginx"][-1]["rps"] / 2)
                        results[s].setdefault(p, []).append(bench.measure(p, s, rate))
                    else:
                        results[s].setdefault(p, []).append(bench.measure(p, s))
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
        print(f"\nMachine: {describe_machine()}. Proxy on CPU {args.proxy_cpus}, wrk and backends on CPU {args.load_cpus}; "
              f"{args.connections} connections, {args.seconds} s per run, medians of {args.rounds} rounds.")
        for s in scenarios:
            if s in ("idle", "idle-new"):
                print_idle_table(s, results[s], proxies)
            elif s == "rate":
                rates = ", ".join(str(r["rate"]) for r in results[s][proxies[0]])
                print_load_table(s, results[s], proxies, f"Requests/s asked for, per round: {rates} "
                                 "(latency counted from when each request was due; req/s is the rate reached).")
            elif s.startswith("tls-"):
                seen = "; ".join(f"{p} {bench.negotiated[p]}" for p in proxies if p in bench.negotiated)
                print_load_table(s, results[s], proxies, f"Negotiated with a Python client at start (the same libssl defaults as wrk): {seen}.")
            else:
                print_load_table(s, results[s], proxies)
    finally:
        bench.close()


if __name__ == "__main__":
    main()
