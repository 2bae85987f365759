#!/usr/bin/env python3
"""Reliability checks against the real binary and real redis-servers, all on
loopback, bounded in time:

  storm     >= 10 000 write requests from 64 clients on overlapping emails
  crash     kill -9 of the service during a write storm, then restart
  restart   Redis (AOF, appendfsync always) killed and restarted under load
  failover  two instances behind Redis Sentinel (a primary, a replica, three
            sentinels); the primary is killed under load and a sentinel
            failover promotes the replica

Each prints its figures and exits non-zero when an invariant breaks. The
invariants are checked by the service's own doctor and by reading back every
acknowledged write.
"""

import argparse
import collections
import contextlib
import datetime
import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, "target", "debug", "user-accounts")
PREFIX = "reliability:"
PASSWORDS = [f"storm passphrase zebra {n} quartz" for n in range(4)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Redis:
    def __init__(self, directory, aof, replica_of=None):
        self.port = free_port()
        self.directory = directory
        self.aof = aof
        self.replica_of = replica_of
        self.process = None

    def start(self):
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--dir", self.directory]
        if self.aof:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        if self.replica_of:
            args += ["--replicaof", "127.0.0.1", str(self.replica_of)]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        wait_for(lambda: self.ping(), 10, "redis-server to start")

    def ping(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self):
        if self.process:
            self.process.kill()
            self.process.wait()
            self.process = None

    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def info(self, section):
        try:
            return command(self.port, "INFO", section)
        except (OSError, RedisReplyError):
            return ""


class RedisReplyError(Exception):
    pass


def command(port, *args, password=None, timeout=1.0):
    """One Redis command over RESP2; the parsed reply. Raises OSError when
    the server is out of reach and RedisReplyError on an error reply."""
    def encode(*words):
        parts = [f"*{len(words)}\r\n".encode()]
        for word in words:
            data = str(word).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        return b"".join(parts)

    def read(stream):
        line = stream.readline()
        if not line.endswith(b"\r\n"):
            raise OSError("connection closed mid-reply")
        kind, rest = line[:1], line[1:-2].decode()
        if kind == b"+":
            return rest
        if kind == b"-":
            raise RedisReplyError(rest)
        if kind == b":":
            return int(rest)
        if kind == b"$":
            if int(rest) < 0:
                return None
            return stream.read(int(rest) + 2)[:-2].decode()
        if kind == b"*":
            if int(rest) < 0:
                return None
            return [read(stream) for _ in range(int(rest))]
        raise OSError(f"unexpected reply {line[:40]!r}")

    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        with s.makefile("rb") as stream:
            if password:
                s.sendall(encode("AUTH", password))
                read(stream)
            s.sendall(encode(*args))
            return read(stream)


def pairs(flat):
    """A flat [field, value, ...] reply as a dict."""
    return dict(zip(flat[::2], flat[1::2]))


class Sentinel:
    """A redis-server in sentinel mode, password-protected, with its own
    writable configuration file (sentinels rewrite it on every change)."""

    PASSWORD = "sentinel-secret"

    def __init__(self, directory, master_name, primary_port):
        self.port = free_port()
        self.directory = directory
        self.master_name = master_name
        self.primary_port = primary_port
        self.process = None

    def start(self):
        conf = os.path.join(self.directory, f"sentinel-{self.port}.conf")
        with open(conf, "w") as f:
            f.write(f"""port {self.port}
bind 127.0.0.1
dir {self.directory}
requirepass {self.PASSWORD}
sentinel sentinel-pass {self.PASSWORD}
sentinel monitor {self.master_name} 127.0.0.1 {self.primary_port} 2
sentinel down-after-milliseconds {self.master_name} 1000
sentinel failover-timeout {self.master_name} 5000
""")
        log = open(os.path.join(self.directory, f"sentinel-{self.port}.log"), "ab")
        self.process = subprocess.Popen(["redis-server", conf, "--sentinel"], stdout=log, stderr=log)
        log.close()
        wait_for(lambda: self.ask("PING") == "PONG", 10, "a sentinel to start")

    def ask(self, *args):
        """The sentinel's reply, or None when it does not answer."""
        try:
            return command(self.port, *args, password=self.PASSWORD)
        except (OSError, RedisReplyError):
            return None

    def master_port(self):
        address = self.ask("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
        return int(address[1]) if address else None

    def sees_replica_and_peers(self):
        master = self.ask("SENTINEL", "MASTER", self.master_name)
        replicas = self.ask("SENTINEL", "REPLICAS", self.master_name) or []
        healthy = [r for r in map(pairs, replicas)
                   if "s_down" not in r.get("flags", "") and r.get("master-link-status") == "ok"]
        return bool(master) and bool(healthy) and pairs(master).get("num-other-sentinels") == "2"

    def url(self):
        return f"redis://:{self.PASSWORD}@127.0.0.1:{self.port}"

    def kill(self):
        if self.process:
            self.process.kill()
            self.process.wait()
            self.process = None


class Service:
    def __init__(self, redis, log_path, extra=None):
        self.port = free_port()
        self.redis = redis
        self.log_path = log_path
        self.extra = extra or {}
        self.process = None

    def env(self):
        env = dict(os.environ)
        env.update({
            # Without a Redis of its own (behind sentinels), an empty
            # REDIS_URL keeps a developer's .env from setting one.
            "REDIS_URL": self.redis.url() if self.redis else "",
            "REDIS_KEY_PREFIX": PREFIX,
            "ROCKET_PORT": str(self.port),
            "ROCKET_ADDRESS": "127.0.0.1",
            "ARGON2_MEMORY_KIB": "1024",
            "ARGON2_ITERATIONS": "1",
            "LOGIN_MAX_FAILURES": "1000000",
        })
        env.update(self.extra)
        return env

    def start(self):
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen([BINARY], cwd=ROOT, env=self.env(), stdout=log, stderr=log)
        wait_for(lambda: request(self.port, "GET", "/health/live")[0] == 200, 20, "the service to start")

    def kill(self):
        if self.process:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.process = None

    def doctor(self):
        result = subprocess.run([BINARY, "doctor"], cwd=ROOT, env=self.env(),
                                capture_output=True, text=True, timeout=120)
        findings = [line for line in result.stdout.splitlines() if line.startswith("found:")]
        return result.returncode, findings


def wait_for(check, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


_local = threading.local()


def request(port, method, path, body=None, token=None, timeout=10):
    """(status, parsed body or None, seconds); status 0 when the connection failed."""
    connections = getattr(_local, "connections", None)
    if connections is None:
        connections = _local.connections = {}
    started = time.monotonic()
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    payload = json.dumps(body) if body is not None else None
    for attempt in range(2):
        conn = connections.get(port)
        if conn is None:
            conn = connections[port] = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            raw = response.read()
            try:
                parsed = json.loads(raw) if raw else None
            except ValueError:
                parsed = None
            return response.status, parsed, time.monotonic() - started
        except (OSError, http.client.HTTPException):
            conn.close()
            connections.pop(port, None)
            # A kept-alive connection the server closed: one fresh retry.
            if attempt == 1 or time.monotonic() - started > 1:
                return 0, None, time.monotonic() - started
    return 0, None, time.monotonic() - started


@contextlib.contextmanager
def running(work, aof, extra=None):
    """A redis-server and the service against it, both stopped on exit."""
    redis = Redis(work, aof=aof)
    redis.start()
    service = Service(redis, os.path.join(work, "service.log"), extra)
    try:
        service.start()
        yield service
    finally:
        service.kill()
        redis.kill()


def unavailable_causes(log_paths, fault_at):
    """The causes the services logged for their 503s, as lines: each cause
    (numbers and ports folded), how often, and when relative to the fault
    (`fault_at`, a time.time())."""
    seen = collections.defaultdict(list)
    for path in log_paths:
        with open(path, errors="replace") as log:
            for line in log:
                match = re.match(r"(\S+) WARN request_id=\S+ (.*)", line)
                if not match:
                    continue
                at = datetime.datetime.fromisoformat(match[1].replace("Z", "+00:00")).timestamp()
                seen[re.sub(r"\d+", "N", match[2])].append(at - fault_at)
    return [f"{len(times)} x {cause} ({min(times):+.1f} s .. {max(times):+.1f} s)"
            for cause, times in sorted(seen.items(), key=lambda item: -len(item[1]))]


def write_storm(port, clients, per_client, emails, deadline=None):
    """Mixed writes on overlapping emails. Returns status counts."""
    counts = {}
    lock = threading.Lock()

    def client(seed):
        rng = random.Random(seed)
        mine = []  # (id, password) of users this client created and holds
        for _ in range(per_client):
            if deadline and time.monotonic() > deadline:
                break
            op = rng.random()
            email = rng.choice(emails)
            if op < 0.35 or not mine:
                password = rng.choice(PASSWORDS)
                status, body, _ = request(port, "POST", "/api/users",
                                          {"name": "Storm", "email": email, "password": password})
                if status == 201:
                    mine.append((body["id"], password))
                kind = "create"
            elif op < 0.60:
                user, password = rng.choice(mine)
                status, _, _ = request(port, "PUT", f"/api/users/{user}",
                                       {"name": "Storm", "email": email, "password": password})
                kind = "update"
            elif op < 0.75:
                index = rng.randrange(len(mine))
                user, password = mine[index]
                new = rng.choice(PASSWORDS)
                status, _, _ = request(port, "PATCH", f"/api/users/{user}",
                                       {"password": password, "new_password": new})
                if status == 200:
                    mine[index] = (user, new)
                kind = "password"
            elif op < 0.90:
                index = rng.randrange(len(mine))
                user, password = mine[index]
                status, _, _ = request(port, "DELETE", f"/api/users/{user}", {"password": password})
                if status in (200, 404):
                    mine.pop(index)
                kind = "delete"
            else:
                status, _, _ = request(port, "POST", "/api/sessions",
                                       {"email": email, "password": rng.choice(PASSWORDS)})
                kind = "login"
            with lock:
                counts[(kind, status)] = counts.get((kind, status), 0) + 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return counts


def summarize(counts):
    by_status = {}
    for (_, status), n in counts.items():
        by_status[status] = by_status.get(status, 0) + n
    return by_status


def storm(args, work):
    with running(work, aof=False) as service:
        emails = [f"s{n}@storm.example" for n in range(40)]
        started = time.monotonic()
        counts = write_storm(service.port, args.clients, args.requests // args.clients, emails)
        seconds = time.monotonic() - started
        by_status = summarize(counts)
        total = sum(by_status.values())
        code, findings = service.doctor()
        print(f"storm: {total} requests from {args.clients} clients in {seconds:.1f} s; "
              f"statuses {dict(sorted(by_status.items()))}; doctor findings {len(findings)}")
        bad = {s: n for s, n in by_status.items() if s >= 500 and s != 503 or s == 0}
        if total < args.requests - args.clients or bad or code != 0:
            for line in findings[:20]:
                print("  " + line)
            raise SystemExit(f"storm failed: server errors {bad}, doctor exit {code}")


def crash(args, work):
    with running(work, aof=False) as service:
        emails = [f"c{n}@crash.example" for n in range(20)]
        results = {}
        storm_thread = threading.Thread(target=lambda: results.update(
            write_storm(service.port, 32, 10_000, emails, deadline=time.monotonic() + 8)))
        storm_thread.start()
        time.sleep(3)
        service.kill()
        killed_at = time.monotonic()
        storm_thread.join()
        service.start()
        code, findings = service.doctor()
        by_status = summarize(results)
        print(f"crash: SIGKILL 3 s into a storm of 32 clients on 20 emails; statuses "
              f"{dict(sorted(by_status.items()))} (0: no connection after the kill); "
              f"restarted {time.monotonic() - killed_at:.1f} s later; doctor findings {len(findings)}")
        if code != 0:
            for line in findings[:20]:
                print("  " + line)
            raise SystemExit("crash left inconsistent data")


def restart(args, work):
    timeout_ms = 1000
    acknowledged = []
    statuses = {}
    unavailable = []
    slow = []
    lock = threading.Lock()
    stop = threading.Event()

    def record(status, seconds):
        with lock:
            statuses[status] = statuses.get(status, 0) + 1
            if status == 503:
                unavailable.append(time.monotonic())
            if seconds > timeout_ms / 1000 + 1.5:
                slow.append(seconds)

    with running(work, aof=True, extra={"REDIS_TIMEOUT_MS": str(timeout_ms)}) as service:
        def load(seed):
            rng = random.Random(seed)
            while not stop.is_set():
                email = f"r{uuid.uuid4().hex}@restart.example"
                status, body, seconds = request(service.port, "POST", "/api/users",
                                                {"name": "Load", "email": email,
                                                 "password": PASSWORDS[0]})
                record(status, seconds)
                if status == 201:
                    with lock:
                        acknowledged.append(body["id"])
                if acknowledged and rng.random() < 0.5:
                    with lock:
                        user = rng.choice(acknowledged)
                    status, _, seconds = request(service.port, "GET", f"/api/users/{user}")
                    record(status, seconds)

        threads = [threading.Thread(target=load, args=(n,)) for n in range(16)]
        try:
            for thread in threads:
                thread.start()
            time.sleep(3)
            service.redis.kill()
            down_at = time.monotonic()
            down_wall = time.time()
            time.sleep(3)
            service.redis.start()
            up_at = time.monotonic()
            time.sleep(4)
        finally:
            stop.set()
            for thread in threads:
                thread.join()

        missing = [user for user in acknowledged
                   if request(service.port, "GET", f"/api/users/{user}")[0] != 200]
        code, findings = service.doctor()
        span = (max(unavailable) - min(unavailable)) if unavailable else 0.0
        after_up = max((t - up_at for t in unavailable), default=0.0)
        print(f"restart: {sum(statuses.values())} requests, statuses {dict(sorted(statuses.items()))}; "
              f"Redis down {up_at - down_at:.1f} s, 503s over {span:.1f} s "
              f"(last {max(after_up, 0):.1f} s after Redis was back); "
              f"requests over the timeout: {len(slow)}; acknowledged writes {len(acknowledged)}, "
              f"lost {len(missing)}; doctor findings {len(findings)}")
        for line in unavailable_causes([service.log_path], down_wall):
            print(f"  503: {line} (from the kill)")
        other_errors = {s: n for s, n in statuses.items() if (s >= 500 and s != 503) or s == 0}
        if missing or other_errors or slow or code != 0:
            raise SystemExit(f"restart failed: lost {len(missing)}, other errors {other_errors}, "
                             f"slow {len(slow)}, doctor exit {code}")


MASTER_NAME = "accounts"


@contextlib.contextmanager
def sentinel_topology(work, services, extra):
    """A primary (AOF, appendfsync always), its replica, three sentinels and
    `services` instances of the service following them; all stopped on exit."""
    with contextlib.ExitStack() as stack:
        def started(thing):
            stack.callback(thing.kill)
            thing.start()
            return thing

        def directory(name):
            path = os.path.join(work, name)
            os.mkdir(path)
            return path

        primary = started(Redis(directory("primary"), aof=True))
        replica = started(Redis(directory("replica"), aof=True, replica_of=primary.port))
        wait_for(lambda: "master_link_status:up" in replica.info("replication"),
                 10, "the replica to sync")
        sentinels = [started(Sentinel(directory(f"sentinel{n}"), MASTER_NAME, primary.port))
                     for n in range(3)]
        wait_for(lambda: all(s.sees_replica_and_peers() for s in sentinels), 30,
                 "the sentinels to see the replica and each other")
        env = {
            "REDIS_SENTINELS": ",".join(s.url() for s in sentinels),
            "REDIS_SENTINEL_MASTER": MASTER_NAME,
        }
        env.update(extra)
        instances = [started(Service(None, os.path.join(work, f"service{n}.log"), env))
                     for n in range(services)]
        yield primary, replica, sentinels, instances


def failover(args, work):
    timeout_ms = 1000
    acknowledged = []
    lock = threading.Lock()
    stop = threading.Event()
    failed_over = threading.Event()  # set once the sentinels name the new primary
    with sentinel_topology(work, 2, {"REDIS_TIMEOUT_MS": str(timeout_ms)}) as (
            primary, replica, sentinels, services):
        figures = {service.port: {"statuses": {}, "unavailable": [], "slow": [], "slowest": 0.0,
                                  "writes_after_failover": 0}
                   for service in services}

        def record(port, status, seconds):
            with lock:
                mine = figures[port]
                mine["statuses"][status] = mine["statuses"].get(status, 0) + 1
                if status == 503:
                    mine["unavailable"].append(time.monotonic())
                mine["slowest"] = max(mine["slowest"], seconds)
                if seconds > timeout_ms / 1000 + 1.5:
                    mine["slow"].append((time.monotonic() - seconds, seconds))

        def load(seed, port):
            rng = random.Random(seed)
            while not stop.is_set():
                after_failover = failed_over.is_set()
                email = f"f{uuid.uuid4().hex}@failover.example"
                status, body, seconds = request(port, "POST", "/api/users",
                                                {"name": "Load", "email": email,
                                                 "password": PASSWORDS[0]})
                record(port, status, seconds)
                if status == 201:
                    with lock:
                        acknowledged.append(body["id"])
                        if after_failover:
                            figures[port]["writes_after_failover"] += 1
                if acknowledged and rng.random() < 0.5:
                    with lock:
                        user = rng.choice(acknowledged)
                    status, _, seconds = request(port, "GET", f"/api/users/{user}")
                    record(port, status, seconds)

        threads = [threading.Thread(target=load, args=(n, services[n % 2].port)) for n in range(16)]
        try:
            for thread in threads:
                thread.start()
            time.sleep(3)
            primary.kill()
            killed_at = time.monotonic()
            killed_wall = time.time()
            first_named = all_named = None
            while time.monotonic() - killed_at < 30:
                named = [s.master_port() == replica.port for s in sentinels]
                if any(named) and first_named is None:
                    first_named = time.monotonic()
                if all(named):
                    all_named = time.monotonic()
                    break
                time.sleep(0.05)
            failed_over.set()
            if all_named is not None:
                time.sleep(4)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        if all_named is None:
            raise SystemExit("failover failed: the sentinels did not all name the replica "
                             "as the new primary within 30 s of the kill")

        def read_back(port):
            missing = []

            def reader(ids):
                for user in ids:
                    if request(port, "GET", f"/api/users/{user}")[0] != 200:
                        with lock:
                            missing.append(user)

            readers = [threading.Thread(target=reader, args=(acknowledged[n::8],)) for n in range(8)]
            for thread in readers:
                thread.start()
            for thread in readers:
                thread.join()
            return missing

        missing = {service.port: read_back(service.port) for service in services}
        lost = set().union(*missing.values())
        code, findings = services[0].doctor()

    def span(times):
        return (max(times) - min(times)) if times else 0.0

    all_unavailable = [t for f in figures.values() for t in f["unavailable"]]
    statuses = {}
    for f in figures.values():
        for status, n in f["statuses"].items():
            statuses[status] = statuses.get(status, 0) + n
    slow = [s for f in figures.values() for s in f["slow"]]
    last_503 = max((t - killed_at for t in all_unavailable), default=0.0)
    print(f"failover: {sum(statuses.values())} requests from 16 clients on 2 instances, "
          f"statuses {dict(sorted(statuses.items()))}; primary killed, sentinels named the "
          f"replica {first_named - killed_at:.1f} s later (all three {all_named - killed_at:.1f} s); "
          f"503s over {span(all_unavailable):.1f} s (last {last_503:.1f} s after the kill); "
          f"requests slower than the timeout + 1.5 s: {len(slow)} (slowest "
          f"{max(f['slowest'] for f in figures.values()):.2f} s); acknowledged writes "
          f"{len(acknowledged)}, lost {len(lost)}; doctor findings {len(findings)}")
    for n, service in enumerate(services):
        f = figures[service.port]
        print(f"  instance {n + 1}: statuses {dict(sorted(f['statuses'].items()))}, "
              f"503s over {span(f['unavailable']):.1f} s, "
              f"writes acknowledged after the failover {f['writes_after_failover']}, "
              f"acknowledged writes it cannot read {len(missing[service.port])}")
        for line in unavailable_causes([service.log_path], killed_wall):
            print(f"    503: {line} (from the kill)")
    other_errors = {s: n for s, n in statuses.items() if (s >= 500 and s != 503) or s == 0}
    stuck = [n + 1 for n, service in enumerate(services)
             if figures[service.port]["writes_after_failover"] == 0]
    if slow:
        print("  slow requests (start relative to the kill, seconds taken): "
              + ", ".join(f"{start - killed_at:+.1f} s {took:.1f} s" for start, took in sorted(slow)))
    if (span(all_unavailable) > 5 or other_errors or slow or lost or code != 0 or stuck):
        for line in findings[:20]:
            print("  " + line)
        raise SystemExit(f"failover failed: 503s over {span(all_unavailable):.1f} s, "
                         f"other errors {other_errors}, slow {len(slow)}, lost {len(lost)}, "
                         f"doctor exit {code}, instances without writes after the failover {stuck}")


CHECKS = {"storm": storm, "crash": crash, "restart": restart, "failover": failover}


def main():
    # A SIGTERM (a CI timeout) unwinds like an error, so every context manager
    # stops what it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checks", nargs="*", metavar="check",
                        help=f"{', '.join(CHECKS)} (default: all of them)")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--requests", type=int, default=10_240)
    args = parser.parse_args()
    args.checks = args.checks or list(CHECKS)
    unknown = set(args.checks) - set(CHECKS)
    if unknown:
        parser.error(f"unknown checks: {', '.join(sorted(unknown))}")
    if not os.path.exists(BINARY):
        raise SystemExit(f"{BINARY} is missing: run cargo build first")
    for check in args.checks:
        with tempfile.TemporaryDirectory() as work:
            CHECKS[check](args, work)
    print(f"reliability: {len(args.checks)} passed, 0 failed")


if __name__ == "__main__":
    main()
