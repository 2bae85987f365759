#!/usr/bin/env python3
"""Reliability checks against the real binary and real redis-servers, all on
loopback, bounded in time:

  storm    >= 10 000 write requests from 64 clients on overlapping emails
  crash    kill -9 of the service during a write storm, then restart
  restart  Redis (AOF, appendfsync always) killed and restarted under load

Each prints its figures and exits non-zero when an invariant breaks. The
invariants are checked by the service's own doctor and by reading back every
acknowledged write.
"""

import argparse
import contextlib
import http.client
import json
import os
import random
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
    def __init__(self, directory, aof):
        self.port = free_port()
        self.directory = directory
        self.aof = aof
        self.process = None

    def start(self):
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--dir", self.directory]
        if self.aof:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
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
            "REDIS_URL": self.redis.url(),
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
        other_errors = {s: n for s, n in statuses.items() if (s >= 500 and s != 503) or s == 0}
        if missing or other_errors or slow or code != 0:
            raise SystemExit(f"restart failed: lost {len(missing)}, other errors {other_errors}, "
                             f"slow {len(slow)}, doctor exit {code}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checks", nargs="*", metavar="check",
                        help="storm, crash or restart (default: all three)")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--requests", type=int, default=10_240)
    args = parser.parse_args()
    args.checks = args.checks or ["storm", "crash", "restart"]
    unknown = set(args.checks) - {"storm", "crash", "restart"}
    if unknown:
        parser.error(f"unknown checks: {', '.join(sorted(unknown))}")
    if not os.path.exists(BINARY):
        raise SystemExit(f"{BINARY} is missing: run cargo build first")
    for check in args.checks:
        with tempfile.TemporaryDirectory() as work:
            {"storm": storm, "crash": crash, "restart": restart}[check](args, work)
    print(f"reliability: {len(args.checks)} passed, 0 failed")


if __name__ == "__main__":
    main()
