#!/usr/bin/env python3
"""Seeds, measures and reports; bench/run starts the processes and calls this.

Standard library only. Talks to 127.0.0.1 and nothing else: the throwaway
redis-server and the service that bench/run started, through redis-cli,
redis-benchmark, wrk and urllib.
"""

import argparse
import binascii
import datetime
import json
import os
import platform
import random
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "scripts"))
import harness  # noqa: E402  (scripts/harness.py)

PASSWORD = "correct horse battery staple"
PREFIX = "bench:"  # REDIS_KEY_PREFIX, as bench/run sets it
# Rounds of the c=64 reads and their HGETALL ceiling; each keeps its best.
ROUNDS = 3
PASSWORD_FIELDS = ("password_params", "password_salt", "password_hash")
# The load generator picks ids and emails from a random sample of the seeded
# users: enough to spread reads over the whole keyspace, small enough for
# every wrk thread to hold in memory even with a million users.
SAMPLE = 100_000
# Users per write to redis-cli --pipe, whose index members go in one ZADD
# per bucket (one ZADD per user would double the commands).
CHUNK = 1000


def bucket_tags():
    """The hash tag of each bucket, as src/store/layout.rs lists them."""
    layout = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "src", "store", "layout.rs")
    with open(layout) as f:
        table = re.search(r"const BUCKET_TAGS: .*?= \[(.*?)\];", f.read(), re.S)
    return re.findall(r'"(\w+)"', table.group(1))


TAGS = bucket_tags()
# Every bucket of the email index.
INDEXES = [f"{PREFIX}{{{tag}}}users:by_email" for tag in TAGS]


def email_bucket(email):
    """An email's bucket: its CRC-16 (XMODEM, Redis Cluster's) modulo the buckets."""
    return binascii.crc_hqx(email.encode(), 0) % len(TAGS)


def user_id_in(bucket, bits):
    """A version 4 user id made of `bits` whose last byte places it in
    `bucket`, as the service makes a new user's id in its email's bucket."""
    raw = bytearray(uuid.UUID(int=bits, version=4).bytes)
    raw[15] = raw[15] - raw[15] % len(TAGS) + bucket
    return str(uuid.UUID(bytes=bytes(raw)))


def user_key(user_id):
    """The key of a user's hash: tagged with its id's bucket."""
    return f"{PREFIX}{{{TAGS[uuid.UUID(user_id).bytes[15] % len(TAGS)]}}}user:{user_id}"


def resp_command(*args):
    """One Redis command in RESP, for redis-cli --pipe."""
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


LUA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wrk.lua")


class OtherWork:
    """How many cores processes other than ours (and the hypervisor, as steal)
    used over a span. On a shared machine others' work skews every figure, so
    each measurement reports it. Ours: the service, Redis, this script and
    the children it waited for (wrk, redis-benchmark, argon2-rate)."""

    def __init__(self, pids):
        self.pids = pids
        self.tick = os.sysconf("SC_CLK_TCK")

    def snapshot(self):
        with open("/proc/stat") as f:
            # user nice system idle iowait irq softirq steal
            v = [int(x) for x in f.readline().split()[1:9]]
        busy = sum(v) - v[3] - v[4]
        ours = 0
        for pid in self.pids:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ours += int(fields[11]) + int(fields[12])  # utime + stime
        t = os.times()
        own = t.user + t.system + t.children_user + t.children_system
        return time.monotonic(), busy / self.tick, ours / self.tick + own

    def cores(self, since):
        t0, busy0, ours0 = since
        t1, busy1, ours1 = self.snapshot()
        return max(0.0, round(((busy1 - busy0) - (ours1 - ours0)) / (t1 - t0), 2))


def keep_best(table, name, figures, rate):
    """Keeps `figures` under `name` unless a faster run is kept already."""
    if name not in table or figures[rate] > table[name][rate]:
        table[name] = figures


def log(message):
    print(message, file=sys.stderr, flush=True)


class Bench:
    def __init__(self, args):
        self.args = args
        self.base = f"http://127.0.0.1:{args.service_port}"
        self.runs = {}  # every wrk run's raw figures, by name
        self.facts = {}  # everything else measured
        self.floor = f"http://127.0.0.1:{args.floor_port}"
        self.other = OtherWork([args.service_pid, args.redis_pid, args.floor_pid])
        self.admin_key = None  # made once the users are seeded

    # --- Redis -------------------------------------------------------------
    def redis(self, *command):
        result = subprocess.run(
            ["redis-cli", "-p", str(self.args.redis_port), *command],
            capture_output=True, text=True, check=True, timeout=60,
        )
        return result.stdout.strip()

    def used_memory(self):
        info = self.redis("INFO", "memory")
        return int(re.search(r"^used_memory:(\d+)", info, re.M).group(1))

    # --- HTTP (setup and checks only; the load is wrk's) -------------------
    def http(self, method, path, body=None, token=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(errors="replace")

    # --- 4. Seeding --------------------------------------------------------
    def create_real_user(self):
        """One user through the API, for a real argon2id hash of PASSWORD."""
        status, user = self.http("POST", "/api/users", {
            "name": "Bench Real User", "email": "real.user@bench.example",
            "password": PASSWORD,
        })
        if status != 201:
            sys.exit(f"creating the real user answered {status}: {user}")
        key = user_key(user["id"])
        password = {field: self.redis("HGET", key, field) for field in PASSWORD_FIELDS}
        params = password["password_params"]
        if not params.startswith("$argon2id$"):
            sys.exit(f"unexpected password_params in Redis: {params[:20]}...")
        cost = params.split("$")[3]
        self.facts["real_user_id"] = user["id"]
        self.facts["argon2_params"] = {k: int(v) for k, v in
                                       (p.split("=") for p in cost.split(","))}
        log(f"real user {user['id']}; its hash uses {cost}")
        return password

    def seed(self, password):
        """Writes N users in the service's layout (docs/data-in-redis.md):
        hash {prefix}{tag}user:{id} with name, email, created, updated (Unix
        ms) and the real user's password_params, password_salt,
        password_hash, and member "{email}\\0{id}", score 0, in the email's
        bucket of the index, {prefix}{tag}users:by_email, the id made in
        the same bucket. RESP straight into redis-cli --pipe."""
        n = self.args.users
        rng = random.Random(20261123)  # the same ids on every run
        sampled = set(rng.sample(range(n), min(n, SAMPLE)))
        sample = []
        now_ms = str(int(time.time() * 1000))

        def bulk(text):
            return f"${len(text)}\r\n{text}\r\n"  # ASCII only: chars == bytes

        # Everything after the key and the per-user fields is the same for
        # every user, so it is encoded once.
        tail_hash = "".join(bulk(field) + bulk(password[field]) for field in PASSWORD_FIELDS) \
            + bulk("created") + bulk(now_ms) + bulk("updated") + bulk(now_ms)
        pipe = subprocess.Popen(
            ["redis-cli", "-p", str(self.args.redis_port), "--pipe"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        commands = 0
        started = time.monotonic()
        tty = sys.stderr.isatty()
        shown = -1
        for start in range(0, n, CHUNK):
            out = []
            members = {}
            for i in range(start, min(start + CHUNK, n)):
                email = f"user{i + 1}@bench.example"
                bucket = email_bucket(email)
                user_id = user_id_in(bucket, rng.getrandbits(128))
                out.append("*16\r\n$4\r\nHSET\r\n" + bulk(user_key(user_id))
                           + "$4\r\nname\r\n" + bulk(f"Bench User {i + 1}")
                           + "$5\r\nemail\r\n" + bulk(email) + tail_hash)
                members.setdefault(bucket, []).append(f"{email}\0{user_id}")
                if i in sampled:
                    sample.append((user_id, email))
            for bucket, in_bucket in members.items():
                out.append(f"*{2 + 2 * len(in_bucket)}\r\n$4\r\nZADD\r\n"
                           + bulk(INDEXES[bucket])
                           + "".join("$1\r\n0\r\n" + bulk(m) for m in in_bucket))
            commands += min(start + CHUNK, n) - start + len(members)
            pipe.stdin.write("".join(out).encode())
            done = min(start + CHUNK, n)
            # A live line on a terminal, a line per tenth otherwise.
            percent = done * 100 // n
            if (tty and percent != shown) or (not tty and percent // 10 != shown // 10) \
                    or done == n:
                shown = percent
                rate = done / max(time.monotonic() - started, 1e-9)
                line = f"seeding {done:>9,}/{n:,} users ({percent:3d} %), {rate:,.0f} users/s"
                print(("\r" + line) if tty else line, end="" if tty else "\n",
                      file=sys.stderr, flush=True)
        if tty:
            print(file=sys.stderr)
        output, _ = pipe.communicate(timeout=600)
        output = output.decode(errors="replace")
        match = re.search(r"errors: (\d+), replies: (\d+)", output)
        if pipe.returncode != 0 or not match or match.group(1) != "0" \
                or int(match.group(2)) != commands:
            sys.exit(f"seeding failed (expected {commands} replies):\n{output}")
        seconds = time.monotonic() - started
        log(f"seeded {n:,} users in {seconds:.1f} s")
        self.facts["seed_seconds"] = round(seconds, 2)
        random.Random(7).shuffle(sample)
        return sample

    def layout_floor(self):
        """Bytes per user of the key layout itself, with no data: the same
        number of index members and user keys, each hash holding one 1-byte
        field. No encoding of the user's data can go below this."""
        rng = random.Random(20261124)

        def chunk(users):
            out, members = [], {}
            for i in users:
                email = f"user{i + 1}@bench.example"
                bucket = email_bucket(email)
                user_id = user_id_in(bucket, rng.getrandbits(128))
                out.append(resp_command(b"HSET", user_key(user_id).encode(), b"n", b"x"))
                members.setdefault(bucket, []).extend([b"0", f"{email}\0{user_id}".encode()])
            for bucket, in_bucket in members.items():
                out.append(resp_command(b"ZADD", INDEXES[bucket].encode(), *in_bucket))
            return b"".join(out)

        floor, index = self.bytes_per_user_in_db1(chunk, INDEXES)
        self.facts["layout_floor_bytes_per_user"] = floor
        self.facts["index_bytes_per_user"] = index
        log(f"layout floor: {floor:,.0f} B per user, of which the email index {index:,.0f} B")
        self.smallest_conceivable_layout()

    def smallest_conceivable_layout(self):
        """Bytes per user of the smallest layout that still has a hash per
        user and a sorted set of emails: each hash under the shortest unique
        binary key, holding only the 48 bytes argon2id cannot do without (a
        16-byte salt and a 32-byte hash) in a 1-byte field, and each index
        member only the email."""
        rng = random.Random(20261124)
        key_bytes = max(1, (self.args.users.bit_length() + 7) // 8)
        # One byte longer than every user key, so no user key is the index
        # (with 1-byte keys, user 105 would be "i").
        index_key = "i" * (key_bytes + 1)

        def chunk(users):
            out = [resp_command(b"HSET", i.to_bytes(key_bytes, "big"), b"p", rng.randbytes(48))
                   for i in users]
            members = [part for i in users for part in (b"0", b"user%d@bench.example" % (i + 1))]
            out.append(resp_command(b"ZADD", index_key.encode(), *members))
            return b"".join(out)

        smallest, index = self.bytes_per_user_in_db1(chunk, [index_key])
        self.facts["smallest_layout_bytes_per_user"] = smallest
        self.facts["smallest_layout_index_bytes_per_user"] = index
        log(f"smallest conceivable layout: {smallest:,.0f} B per user, of which the "
            f"email index {index:,.0f} B")

    def bytes_per_user_in_db1(self, chunk, index_keys):
        """Writes `chunk(users)` for every CHUNK of users into database 1 of
        the same redis-server, and returns the bytes per user in all and in
        the `index_keys`, before dropping the database."""
        n = self.args.users
        before = self.used_memory()
        pipe = subprocess.Popen(
            ["redis-cli", "-p", str(self.args.redis_port), "-n", "1", "--pipe"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )
        for start in range(0, n, CHUNK):
            pipe.stdin.write(chunk(range(start, min(start + CHUNK, n))))
        pipe.communicate(timeout=600)
        if pipe.returncode != 0:
            sys.exit("writing to database 1 for a memory floor failed")
        index = sum(int(self.redis("-n", "1", "MEMORY", "USAGE", key, "SAMPLES", "0") or 0)
                    for key in index_keys)
        total = self.used_memory() - before
        self.redis("-n", "1", "FLUSHDB")
        return round(total / n, 1), round(index / n, 1)

    def write_sample_files(self, sample):
        out = self.args.out
        self.ids_file = os.path.join(out, "paths-by-id.txt")
        self.emails_file = os.path.join(out, "paths-by-email.txt")
        self.logins_file = os.path.join(out, "login-emails.txt")
        self.floor_file = os.path.join(out, "paths-of-floor.txt")
        with open(self.ids_file, "w") as f:
            f.writelines(f"/api/users/{user_id}\n" for user_id, _ in sample)
        with open(self.emails_file, "w") as f:
            f.writelines(f"/api/users/{email}\n" for _, email in sample)
        with open(self.logins_file, "w") as f:
            f.writelines(f"{email}\n" for _, email in sample)
        with open(self.floor_file, "w") as f:
            f.writelines(f"/hash/{urllib.parse.quote(user_key(user_id))}\n"
                         for user_id, _ in sample)

    def check_seed(self, sample):
        """The service reads seeded users like its own, or the figures mean nothing."""
        total = sum(int(self.redis("ZCARD", index)) for index in INDEXES)
        if total != self.args.users + 1:  # + the real user
            sys.exit(f"the email index holds {total} members, expected {self.args.users + 1}")
        user_id, email = sample[0]
        status, by_id = self.http("GET", f"/api/users/{user_id}", token=self.admin_key)
        status2, by_email = self.http("GET", f"/api/users/{email}", token=self.admin_key)
        status3, login = self.http("POST", "/api/sessions", {"email": email, "password": PASSWORD})
        if status != 200 or status2 != 200 or by_id.get("email") != email \
                or by_email.get("id") != user_id or status3 != 201:
            sys.exit(f"the service does not read the seeded users: {status} {by_id} / "
                     f"{status2} {by_email} / login {status3}")
        status, page = self.http("GET", "/api/users?limit=50", token=self.admin_key)
        if status != 200 or page.get("total") != self.args.users + 1 or len(page["users"]) != 50:
            sys.exit(f"listing the seeded users failed: {status}")
        log("the service reads, finds, lists and logs in seeded users")

    def command_line(self, *args):
        """The service's command line, with the service's Redis settings."""
        env = dict(os.environ, REDIS_URL=f"redis://127.0.0.1:{self.args.redis_port}/0",
                   REDIS_KEY_PREFIX=PREFIX)
        return subprocess.run(["target/release/user-accounts", *args], env=env,
                              capture_output=True, text=True, timeout=300)

    def make_admin_key(self):
        """An admin key, for the reads that need one."""
        result = self.command_line("admin-key", "create", "bench")
        if result.returncode != 0:
            sys.exit(f"admin-key create failed: {result.stderr}")
        self.admin_key = result.stdout.strip()

    def doctor(self):
        """The service's own consistency check, over the seeded data."""
        result = self.command_line("doctor")
        last = (result.stdout.strip().splitlines() or ["(no output)"])[-1]
        self.facts["doctor"] = last
        if result.returncode != 0:
            sys.exit(f"user-accounts doctor finds the seeded data inconsistent:\n"
                     f"{result.stdout}{result.stderr}")
        log(f"user-accounts doctor: {last}")

    # --- 5. Load -----------------------------------------------------------
    def wrk_command(self, connections, mode, url, duration):
        # Two wrk threads at most: there are two cores, and the service and
        # Redis need them too.
        threads = min(connections, 2)
        return ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s",
                "--timeout", "10s", "-s", LUA, url, "--", *mode]

    @staticmethod
    def wrk_figures(name, returncode, stdout, stderr):
        """The line bench/wrk.lua's done() prints, as a dict."""
        line = next((l for l in stdout.splitlines() if l.startswith("BENCH_JSON ")), None)
        if returncode != 0 or line is None:
            sys.exit(f"wrk failed ({name}):\n{stdout}\n{stderr}")
        return json.loads(line[len("BENCH_JSON "):])

    def wrk(self, name, connections, mode, path="/", duration=None, quiet=False, base=None):
        """One load run against the service (or `base`); its figures are kept
        under `name` unless quiet."""
        duration = duration or self.args.duration
        since = self.other.snapshot()
        url = (base or self.base) + path
        result = subprocess.run(self.wrk_command(connections, mode, url, duration),
                                capture_output=True, text=True, timeout=duration + 60)
        other_cores = self.other.cores(since)
        raw = self.wrk_figures(name, result.returncode, result.stdout, result.stderr)
        errors = sum(raw["errors"].values())
        seconds = raw["duration_us"] / 1e6
        run = {
            "connections": connections,
            "seconds": round(seconds, 3),
            "requests": raw["requests"],
            # Only successful answers count towards throughput.
            "ok_per_s": round((raw["requests"] - raw["errors"]["status"]) / seconds, 1),
            "p50_ms": raw["latency_us"]["p50"] / 1000,
            "p90_ms": raw["latency_us"]["p90"] / 1000,
            "p99_ms": raw["latency_us"]["p99"] / 1000,
            "max_ms": raw["latency_us"]["max"] / 1000,
            "errors": raw["errors"],
            "error_count": errors,
            "other_cores": other_cores,
        }
        if not quiet:
            keep_best(self.runs, name, run, "ok_per_s")
            log(f"{name:<34} {run['ok_per_s']:>10,.1f} req/s  p50 {run['p50_ms']:8.2f} ms"
                f"  p99 {run['p99_ms']:8.2f} ms  errors {errors}"
                + (f"  (other work: {other_cores} cores)" if other_cores >= 0.1 else ""))
        return run

    def rss_mib(self, field="VmHWM"):
        """VmHWM is the peak resident set so far; VmRSS the current one."""
        with open(f"/proc/{self.args.service_pid}/status") as f:
            kib = int(re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M).group(1))
        return round(kib / 1024, 1)

    def measure(self, sample_id):
        key = self.admin_key
        ids, emails, logins = ["paths", self.ids_file, key], ["paths", self.emails_file, key], \
            ["login", self.logins_file, PASSWORD]
        list_page = ["bearer", key]
        rss = self.facts["peak_rss_mib"] = {"at_start": self.rss_mib()}
        since = self.other.snapshot()
        time.sleep(1)
        busy = self.facts["other_cores_before"] = self.other.cores(since)
        if busy > 0.2:
            log(f"warning: {busy} of {os.cpu_count()} cores are busy with other work; "
                "the figures will be low and noisy")
        whole_run = self.other.snapshot()
        log("\nwarming up (2 s, not counted)")
        self.wrk("warm-up", 16, ids, duration=2, quiet=True)
        log("")
        # Each ceiling is measured right before the runs it is compared with,
        # so that a noisy neighbour on a shared machine skews both alike.
        key = user_key(sample_id)
        self.facts["hgetall_c1"] = self.redis_benchmark(key, 1, 50_000)
        self.wrk("GET /api/users/{id} c=1", 1, ids)
        self.wrk("GET /api/users/{email} c=1", 1, emails)
        self.wrk("GET /api/users?limit=50 c=1", 1, list_page, "/api/users?limit=50")
        # The c=64 targets set two throughputs against each other, and a busy
        # neighbour on a shared machine only ever slows a run down: each of
        # them is the best of ROUNDS rounds, the ceiling's runs taking turns
        # with the service's.
        for _ in range(ROUNDS):
            keep_best(self.facts, "hgetall_c64", self.redis_benchmark(key, 64, 200_000),
                      "per_s")
            # Not a target: what the HTTP stack alone (Rocket, the request
            # log line, metrics) answers here, for reading the GET figures.
            self.wrk("GET /ping c=64", 64, ["fixed"], "/ping")
            self.wrk("GET /api/users/{id} c=64", 64, ids)
            self.wrk("GET /api/users/{email} c=64", 64, emails)
        self.wrk("GET /api/users?limit=50 c=64", 64, list_page, "/api/users?limit=50")
        rss["after_gets"] = self.rss_mib()
        log("")
        self.wrk("POST /api/users c=2", 2, ["signup", "c2", PASSWORD])
        self.wrk("POST /api/sessions c=2", 2, logins)
        # As for the reads: the c=16 targets and their argon2 ceiling take
        # turns for ROUNDS rounds, each keeping its best run.
        for round_number in range(ROUNDS):
            self.argon2_ceiling()
            self.wrk("POST /api/users c=16", 16, ["signup", f"c16r{round_number}", PASSWORD])
            self.wrk("POST /api/sessions c=16", 16, logins)
        rss["after_argon2"] = self.rss_mib()
        # Authenticated by a session: the session is checked and renewed (one
        # script), then the user is read. Against the same run's /ping.
        status, session = self.http("POST", "/api/sessions",
                                    {"email": "real.user@bench.example", "password": PASSWORD})
        if status != 201:
            sys.exit(f"logging in the real user answered {status}: {session}")
        own = ["bearer", session["token"]]
        # The read floor (bench/read-floor) takes turns with them: what one
        # Redis round trip adds to a request on this stack, at the least.
        for _ in range(ROUNDS):
            self.wrk("GET /ping c=64 (session round)", 64, ["fixed"], "/ping")
            self.wrk("GET /api/users/{id} c=64 with its own session", 64, own,
                     f"/api/users/{self.facts['real_user_id']}")
            self.wrk("GET /api/users/{id} c=64 with an admin key", 64, ids)
            self.wrk("read floor: GET /ping c=64", 64, ["fixed"], "/ping", base=self.floor)
            self.wrk("read floor: GET /hash/{key} c=64", 64, ["paths", self.floor_file],
                     base=self.floor)
        self.wrk("GET /api/sessions/current c=64", 64, own, "/api/sessions/current")
        # The storm target compares two p99s, and a p99 of one short run on a
        # shared machine is noisy: ROUNDS pairs of a quiet run and a storm
        # run right after it, and the pair with the median ratio counts.
        pairs = sorted((self.storm_pair(round_number) for round_number in range(ROUNDS)),
                       key=lambda pair: pair[1]["p99_ms"] / pair[0]["p99_ms"])
        quiet, storm, signups_per_s = pairs[len(pairs) // 2]
        self.runs["GET /api/users/{id} c=64 before the storm"] = quiet
        self.runs["GET /api/users/{id} c=64 in storm"] = storm
        self.facts["storm_signups_per_s"] = signups_per_s
        self.facts["storm_ratios"] = [round(b["p99_ms"] / a["p99_ms"], 2) for a, b, _ in pairs]
        log(f"storm p99 / quiet p99 by round, sorted: {self.facts['storm_ratios']}")
        self.facts["other_cores_mean"] = self.other.cores(whole_run)
        self.facts["other_cores_max"] = max(
            [run["other_cores"] for run in self.runs.values()]
            + [self.facts[k]["other_cores"] for k in ("hgetall_c64", "hgetall_c1", "argon2")])
        time.sleep(1)  # the service may still be finishing queued sign-ups
        rss["at_end"] = self.rss_mib()
        self.facts["rss_at_end_mib"] = self.rss_mib("VmRSS")
        log(f"service peak RSS (MiB): {rss}; resident at the end: "
            f"{self.facts['rss_at_end_mib']} MiB")

    def storm_pair(self, round_number):
        """GET by id at c=64 alone, then again while sign-ups at c=16 keep
        argon2 busy: (quiet run, storm run, sign-ups per second)."""
        ids = ["paths", self.ids_file, self.admin_key]
        quiet = self.wrk("GET /api/users/{id} c=64 before the storm", 64, ids, quiet=True)
        # The sign-ups start first and end last, so the whole GET run
        # overlaps them.
        since = self.other.snapshot()
        signups = subprocess.Popen(
            self.wrk_command(16, ["signup", f"storm{round_number}", PASSWORD],
                             self.base + "/", self.args.duration + 3),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(1)
            storm = self.wrk("GET /api/users/{id} c=64 in storm", 64, ids, quiet=True)
            out, err = signups.communicate(timeout=self.args.duration + 60)
        finally:
            if signups.poll() is None:
                signups.kill()
        # The sign-ups' own wrk only counts as ours once waited for.
        storm["other_cores"] = self.other.cores(since)
        raw = self.wrk_figures("storm", signups.returncode, out, err)
        signups_per_s = round(
            (raw["requests"] - raw["errors"]["status"]) / (raw["duration_us"] / 1e6), 1)
        log(f"storm round {round_number + 1}: quiet p99 {quiet['p99_ms']:.2f} ms, "
            f"storm p99 {storm['p99_ms']:.2f} ms ({storm['ok_per_s']:,.0f} req/s, "
            f"errors {storm['error_count']}), sign-ups {signups_per_s}/s")
        return quiet, storm, signups_per_s

    # --- 5. Ceilings -------------------------------------------------------
    def redis_benchmark(self, key, clients, requests):
        since = self.other.snapshot()
        result = subprocess.run(
            ["redis-benchmark", "-h", "127.0.0.1", "-p", str(self.args.redis_port),
             "-c", str(clients), "-n", str(requests), "-q", "HGETALL", key],
            capture_output=True, text=True, timeout=300,
        )
        # With -q, a live "\r"-updated line ends in "N requests per second, p50=...".
        match = re.findall(r"([\d.]+) requests per second(?:, p50=([\d.]+) msec)?",
                           result.stdout)
        if result.returncode != 0 or not match:
            sys.exit(f"redis-benchmark failed:\n{result.stdout}\n{result.stderr}")
        rps, p50 = match[-1]
        log(f"HGETALL (redis-benchmark) c={clients:<3}          {float(rps):>10,.1f} req/s"
            + (f"  p50 {float(p50):8.3f} ms" if p50 else ""))
        return {"clients": clients, "requests": requests, "per_s": float(rps),
                "p50_ms": float(p50) if p50 else None, "other_cores": self.other.cores(since)}

    def argon2_ceiling(self):
        """The service's argon2 crate and parameters on every core, nothing else running."""
        cores = os.cpu_count() or 1
        p = self.facts["argon2_params"]
        seconds = max(self.args.duration, 3)
        since = self.other.snapshot()
        result = subprocess.run(
            [self.args.argon2_rate, str(cores), str(seconds), str(p["m"]), str(p["t"]),
             str(p["p"])],
            capture_output=True, text=True, timeout=seconds + 60, check=True,
        )
        ceiling = json.loads(result.stdout)
        ceiling["params"] = p
        ceiling["other_cores"] = self.other.cores(since)
        keep_best(self.facts, "argon2", ceiling, "hashes_per_s")
        log(f"argon2id m={p['m']},t={p['t']},p={p['p']} on {cores} threads"
            f"    {ceiling['hashes_per_s']:>10,.1f} hashes/s")


# --- 6. Report ---------------------------------------------------------------
def ms(value):
    return f"{value:.2f} ms" if value < 100 else f"{value:.0f} ms"


# Other work above this many cores during a measurement is flagged beside it.
NOISY = 0.2


def noise(measurement):
    cores = measurement.get("other_cores", 0)
    return f" (other work: {cores} cores)" if cores >= NOISY else ""


def http_cell(run):
    text = f"{run['ok_per_s']:,.0f} req/s, p50 {ms(run['p50_ms'])}, p99 {ms(run['p99_ms'])}"
    if run["error_count"]:
        text += f", **{run['error_count']} errors**"
    return text + noise(run)


def figures(bench):
    """One row per figure: what, measured, ceiling, ratio, target, result."""
    runs, facts = bench.runs, bench.facts
    hget64, hget1 = facts["hgetall_c64"]["per_s"], facts["hgetall_c1"]["per_s"]
    argon2 = facts["argon2"]["hashes_per_s"]
    rows = []

    def row(name, measured, ceiling=None, ratio=None, ratio_text=None, target=None,
            passed=None, errors=0, value=None):
        result = "" if passed is None else ("pass" if passed and not errors else "miss")
        if passed and errors:
            result = "miss (errors)"
        rows.append({"figure": name, "measured": measured, "value": value,
                     "ceiling": ceiling or "", "ratio": ratio,
                     "ratio_text": ratio_text or "", "target": target or "",
                     "result": result})

    def http_row(name, ceiling_name=None, ceiling=None, at_least=None):
        run = runs[name]
        ratio = run["ok_per_s"] / ceiling if ceiling else None
        row(name, http_cell(run), f"{ceiling_name} {ceiling:,.0f}/s" if ceiling else "",
            ratio, f"{ratio:.0%}" if ratio is not None else "",
            f"≥ {at_least:.0%}" if at_least else "",
            ratio >= at_least if at_least else None, run["error_count"], run["ok_per_s"])

    http_row("GET /api/users/{id} c=1", "HGETALL c=1", hget1)
    http_row("GET /api/users/{id} c=64", "HGETALL c=64", hget64, 0.40)
    http_row("GET /api/users/{email} c=1", "HGETALL c=1", hget1)
    http_row("GET /api/users/{email} c=64", "HGETALL c=64", hget64, 0.30)
    http_row("GET /api/users?limit=50 c=1")
    http_row("GET /api/users?limit=50 c=64")
    http_row("GET /api/sessions/current c=64")
    ping_rounds = runs["GET /ping c=64 (session round)"]["ok_per_s"]
    http_row("GET /api/users/{id} c=64 with an admin key", "/ping c=64", ping_rounds, 0.75)
    http_row("GET /api/users/{id} c=64 with its own session", "/ping c=64", ping_rounds, 0.60)
    floor_ping = runs["read floor: GET /ping c=64"]["ok_per_s"]
    http_row("read floor: GET /hash/{key} c=64", "its own /ping c=64", floor_ping)
    # The service's /ping plus what one round trip costs at the least: the
    # highest share of the service's /ping that any read can reach here.
    floor_read = runs["read floor: GET /hash/{key} c=64"]["ok_per_s"]
    highest = (1 / ping_rounds) / (1 / ping_rounds + 1 / floor_read - 1 / floor_ping)
    row("Highest share of /ping c=64 any read with one Redis round trip can reach here: "
        "the service's /ping plus the read floor's extra time per request",
        f"{highest * ping_rounds:,.0f} req/s", f"/ping c=64 {ping_rounds:,.0f}/s", highest,
        f"{highest:.0%}", value=highest * ping_rounds)
    for route in ("POST /api/users", "POST /api/sessions"):
        http_row(f"{route} c=2", "argon2", argon2)
        http_row(f"{route} c=16", "argon2", argon2, 0.90)

    storm, quiet = (runs["GET /api/users/{id} c=64 in storm"],
                    runs["GET /api/users/{id} c=64 before the storm"])
    times = storm["p99_ms"] / quiet["p99_ms"]
    row("GET /api/users/{id} c=64 p99 during a sign-up storm (POST c=16)",
        f"p99 {ms(storm['p99_ms'])} ({storm['ok_per_s']:,.0f} req/s; "
        f"sign-ups {facts['storm_signups_per_s']:,.1f}/s)"
        + (f", **{storm['error_count']} errors**" if storm["error_count"] else "") + noise(storm),
        f"quiet p99 {ms(quiet['p99_ms'])}", times,
        f"{times:.1f}× (median of {', '.join(f'{r:.1f}' for r in facts['storm_ratios'])})",
        "≤ 3×", times <= 3,
        storm["error_count"], storm["p99_ms"])

    per_user, hash_ = facts["redis_bytes_per_user"], facts["user_hash"]
    floor = facts["layout_floor_bytes_per_user"]
    row(f"Redis memory per user (used_memory, {bench.args.users:,} users)",
        f"{per_user:,.0f} B (of which the user hash: {hash_['memory_usage']} B, "
        f"{hash_['encoding']} encoding)", target="≤ 250 B (at 100 000 users)", passed=per_user <= 250,
        value=per_user)
    row("Floor of the key layout: an index member and a one-field hash per user",
        f"{floor:,.0f} B per user (of which the email index: "
        f"{facts['index_bytes_per_user']:,.0f} B)", value=floor)
    smallest = facts["smallest_layout_bytes_per_user"]
    row("Smallest conceivable layout: a hash per user under the shortest binary key, "
        "holding only argon2's 48-byte salt and hash, and an email-only index member",
        f"{smallest:,.0f} B per user (of which the email index: "
        f"{facts['smallest_layout_index_bytes_per_user']:,.0f} B)", value=smallest)
    rss = facts["peak_rss_mib"]
    row("Service peak RSS (VmHWM) after the GET runs at c=64",
        f"{rss['after_gets']:.1f} MiB", target="≤ 64 MiB", passed=rss["after_gets"] <= 64,
        value=rss["after_gets"])
    # Not a target (that is under the c=64 reads), but the figure an
    # operator sizes memory by: it includes argon2's work buffers.
    row("Service peak RSS (VmHWM) at the end, after sign-ups and logins",
        f"{rss['at_end']:.1f} MiB (resident at the end: {facts['rss_at_end_mib']:.1f} MiB)",
        value=rss["at_end"])

    ping = runs["GET /ping c=64"]
    row("Reference: GET /ping c=64 (the HTTP stack alone)", http_cell(ping),
        errors=ping["error_count"], value=ping["ok_per_s"])
    row("Ceiling: HGETALL c=64 (redis-benchmark)",
        f"{hget64:,.0f} req/s" + noise(facts["hgetall_c64"]), value=hget64)
    row("Ceiling: HGETALL c=1 (redis-benchmark)",
        f"{hget1:,.0f} req/s" + noise(facts["hgetall_c1"]), value=hget1)
    a = facts["argon2"]
    row(f"Ceiling: argon2id m={a['params']['m']},t={a['params']['t']},p={a['params']['p']}, "
        f"{a['threads']} threads", f"{argon2:,.1f} hashes/s" + noise(a), value=argon2)
    return rows


def markdown(rows):
    lines = ["| Figure | Measured | Ceiling | Ratio | Target | Result |",
             "|---|---|---|---:|---|---|"]
    for r in rows:
        lines.append(f"| {r['figure']} | {r['measured']} | {r['ceiling']} | "
                     f"{r['ratio_text']} | {r['target']} | {r['result']} |")
    return "\n".join(lines)


def revision():
    """The commit measured, and whether the work tree differed from it."""
    def git(*args):
        return subprocess.run(["git", *args], capture_output=True, text=True).stdout.strip()
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench")
    return commit + ("+changes" if dirty else "")


def machine():
    model = ""
    with open("/proc/cpuinfo") as f:
        match = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.M)
        model = match.group(1) if match else platform.machine()
    with open("/proc/meminfo") as f:
        mem_kib = int(re.search(r"^MemTotal:\s+(\d+)", f.read(), re.M).group(1))
    redis = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "redis": (re.search(r"v=(\S+)", redis) or [None, "?"])[1],
        "wrk": (wrk.split() or ["?", "?"])[1],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--duration", type=int, required=True)
    parser.add_argument("--redis-port", type=int, required=True)
    parser.add_argument("--service-port", type=int, required=True)
    parser.add_argument("--service-pid", type=int, required=True)
    parser.add_argument("--floor-port", type=int, required=True)
    parser.add_argument("--floor-pid", type=int, required=True)
    parser.add_argument("--redis-pid", type=int, required=True)
    parser.add_argument("--argon2-rate", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    # bench/run stops us with SIGTERM; exiting through SystemExit lets
    # subprocess.run kill the wrk or redis-cli it is waiting for.
    harness.exit_on_sigterm()

    bench = Bench(args)
    started = time.monotonic()
    password = bench.create_real_user()
    before = bench.used_memory()
    sample = bench.seed(password)
    after = bench.used_memory()
    bench.facts["redis_used_memory"] = {"before_seed": before, "after_seed": after}
    bench.facts["redis_bytes_per_user"] = round((after - before) / args.users, 1)
    # Where the bytes go: one user hash as Redis stores it.
    key = user_key(sample[0][0])
    bench.facts["user_hash"] = {
        "memory_usage": int(bench.redis("MEMORY", "USAGE", key)),
        "encoding": bench.redis("OBJECT", "ENCODING", key),
        "hash_max_listpack_value": int(bench.redis(
            "CONFIG", "GET", "hash-max-listpack-value").splitlines()[-1]),
    }
    bench.layout_floor()
    bench.make_admin_key()
    bench.write_sample_files(sample)
    bench.check_seed(sample)
    if args.users <= 100_000:
        bench.doctor()  # a full SCAN: quick up to here, skipped beyond
    bench.measure(sample[0][0])

    rows = figures(bench)
    table = markdown(rows)
    info = machine()
    rev = revision()
    now = datetime.datetime.now(datetime.timezone.utc).astimezone()
    header = (f"{now:%Y-%m-%d}, {info['cores']} cores ({info['cpu']}), "
              f"{info['memory_gib']} GiB, Linux {info['kernel']}; redis {info['redis']}, "
              f"wrk {info['wrk']}; commit {rev}; {args.users:,} users, {args.duration} s per run "
              f"(c=64 reads, c=16 sign-ups and logins, and their ceilings: best of {ROUNDS}); "
              f"other work on the machine: {bench.facts['other_cores_mean']} cores on average, "
              f"{bench.facts['other_cores_max']} at most during one measurement")
    print(f"\n{header}\n\n{table}\n")
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(f"{header}\n\n{table}\n")
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"date": now.isoformat(timespec="seconds"), "machine": info, "commit": rev,
                   "users": args.users, "duration_s": args.duration,
                   "figures": rows, "runs": bench.runs, "facts": bench.facts},
                  f, indent=2)
        f.write("\n")
    if bench.facts["other_cores_max"] >= NOISY:
        log(f"warning: other work used up to {bench.facts['other_cores_max']} cores during "
            "the runs (flagged in the table); rerun on a quiet machine for steady figures")
    misses = sum(1 for r in rows if r["result"].startswith("miss"))
    log(f"{misses} target(s) missed; took {time.monotonic() - started:.0f} s "
        f"(after the build); results in {os.path.relpath(args.out)}/results.md and results.json")


if __name__ == "__main__":
    main()
