"""What the Python scripts share (scripts/reliability, bench/compare,
bench/bench.py): free loopback ports, throwaway redis-servers, the service
started on a free port and waited for, a small Redis client, and SIGTERM
handling. Standard library only.

    sys.path.insert(0, "<repository>/scripts")
    import harness
"""

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, "target", "debug", "user-accounts")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def exit_on_sigterm():
    """A SIGTERM (a CI timeout, bench/run stopping us) unwinds like an error,
    so every `finally` and context manager stops what it started."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


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


class Redis:
    """A redis-server on a free loopback port, its files in `directory`;
    without persistence, or with an append-only file fsynced on every write."""

    def __init__(self, directory, aof=False, replica_of=None):
        self.port = free_port()
        self.directory = directory
        self.aof = aof
        self.replica_of = replica_of
        self.process = None

    def start(self):
        # A replica that needs a full sync from a newly promoted primary
        # would otherwise wait 5 s for others to share it, and confirm no
        # write (REDIS_WAIT_REPLICAS) meanwhile.
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--dir", self.directory,
                "--repl-diskless-sync-delay", "0"]
        if self.aof:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        if self.replica_of:
            args += ["--replicaof", "127.0.0.1", str(self.replica_of)]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        wait_for(self.ping, 10, "redis-server to start")

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


def answers(port, path):
    """Whether GET `path` on 127.0.0.1:`port` answers 200."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        connection.request("GET", path)
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


class Service:
    """The service (`binary`, by default the debug build) on a free loopback
    port, with `settings` over the environment, its output appended to
    `log_path`. `start` returns once `ready_path` answers 200."""

    def __init__(self, settings, log_path, binary=BINARY, ready_path="/health/live"):
        self.port = free_port()
        self.settings = settings
        self.log_path = log_path
        self.binary = binary
        self.ready_path = ready_path
        self.process = None

    def env(self):
        return dict(os.environ, ROCKET_ADDRESS="127.0.0.1", ROCKET_PORT=str(self.port),
                    **self.settings)

    def start(self, seconds=20):
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([self.binary], cwd=ROOT, env=self.env(),
                                            stdout=log, stderr=log)

        def started():
            if self.process.poll() is not None:
                raise SystemExit(f"the service exited at start; see {self.log_path}")
            return answers(self.port, self.ready_path)

        wait_for(started, seconds, f"the service to start (its log: {self.log_path})")

    def admin_key(self, scope="admin"):
        """A new admin key of `scope`, made with the binary's command line and
        the service's settings."""
        name = f"{scope}-{uuid.uuid4().hex}"
        made = subprocess.run([self.binary, "admin-key", "create", name, "--scope", scope],
                              cwd=ROOT, env=self.env(), capture_output=True, text=True,
                              check=False)
        if made.returncode != 0:
            raise SystemExit(f"admin-key create failed: {made.stderr.strip()}")
        return made.stdout.strip()

    def stop(self):
        """SIGTERM, and waits for the graceful shutdown."""
        if self.process:
            self.process.terminate()
            self.process.wait(timeout=15)
            self.process = None

    def kill(self):
        if self.process:
            self.process.kill()
            self.process.wait()
            self.process = None

    def run(self, *args, timeout=120):
        """The binary with `args` (e.g. "doctor") and the same settings."""
        return subprocess.run([self.binary, *args], cwd=ROOT, env=self.env(),
                              capture_output=True, text=True, timeout=timeout)
