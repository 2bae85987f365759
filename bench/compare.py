#!/usr/bin/env python3
"""Compares the read path of two builds of the service on this machine:
   bench/compare [--rounds N] [--duration SECONDS] [--users N] REV_A REV_B

A revision is anything `git rev-parse` takes, or `.` for the working tree.
Each is built in release mode (a git worktree under target/bench/compare/),
then both run against one throwaway redis-server holding the same seeded
users, in alternating rounds: a round measures HGETALL c=64 (redis-benchmark),
then each build in turn (the order flips every round) with GET by id and GET
by email at c=64 (wrk). A shared machine's speed drifts from one minute to the
next, so single runs of A and B are not comparable; medians of alternating
rounds are. One figure is steadier still: the service's CPU time per request
divided by wrk's. wrk does the same work per request with either build, so
the ratio cancels out how fast the machine happens to be.
"""

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from types import SimpleNamespace

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (next to this file)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "target", "bench", "compare")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build(revision):
    """The release binary of `revision`, copied to OUT; built in a worktree
    (the working tree itself for `.`) sharing one target directory."""
    if revision == ".":
        source, name = ROOT, "working-tree"
    else:
        commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", revision],
                                capture_output=True, text=True, check=True).stdout.strip()
        source, name = os.path.join(OUT, "src", commit), commit
        if not os.path.isdir(source):
            subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", "-f", source,
                            commit], check=True, capture_output=True)
    bench.log(f"building {revision} ({name})")
    target = os.path.join(OUT, "cargo")
    subprocess.run(["cargo", "build", "--release", "--locked", "--quiet", "--bin",
                    "user-accounts", "--target-dir", target], cwd=source, check=True)
    binary = os.path.join(OUT, f"user-accounts-{name}")
    shutil.copy2(os.path.join(target, "release", "user-accounts"), binary)
    return name, binary


class Service:
    """One build of the service on `port`, against the shared redis-server."""

    def __init__(self, binary, redis_port, port):
        env = dict(os.environ, REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
                   REDIS_KEY_PREFIX=bench.PREFIX, ROCKET_ADDRESS="127.0.0.1",
                   ROCKET_PORT=str(port), ROCKET_LOG_LEVEL="critical",
                   ROCKET_PROFILE="release", STATIC_DIR=os.path.join(ROOT, "static"))
        self.log = open(os.path.join(OUT, "service.log"), "w")
        self.process = subprocess.Popen([binary], env=env, stdout=self.log,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"the service did not start; see {self.log.name}")
                time.sleep(0.1)

    def cpu_seconds(self):
        with open(f"/proc/{self.process.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=15)
        self.log.close()


def measure(runner, service, name, paths):
    """One wrk run at c=64; req/s and CPU microseconds per request."""
    service_before, children_before = service.cpu_seconds(), os.times()
    run = runner.wrk(name, 64, ["paths", paths], quiet=True)
    children_after = os.times()
    wrk_cpu = (children_after.children_user + children_after.children_system
               - children_before.children_user - children_before.children_system)
    requests = max(run["requests"], 1)
    service_us = (service.cpu_seconds() - service_before) * 1e6 / requests
    return {"per_s": run["ok_per_s"], "errors": run["error_count"],
            "service_us": service_us, "wrk_us": wrk_cpu * 1e6 / requests}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("revisions", nargs=2, metavar="REV")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--users", type=int, default=10_000)
    args = parser.parse_args()
    for tool in ("redis-server", "redis-cli", "redis-benchmark", "wrk"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing: bench/run installs it (redis-server, redis-tools, wrk)")
    os.makedirs(OUT, exist_ok=True)
    builds = [build(revision) for revision in args.revisions]
    if builds[0][0] == builds[1][0]:
        sys.exit("both revisions are the same build")

    redis_port, service_port = free_port(), free_port()
    redis = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port),
                              "--save", "", "--appendonly", "no", "--dir", OUT],
                             stdout=subprocess.DEVNULL)
    service = None
    try:
        runner_args = SimpleNamespace(users=args.users, duration=args.duration,
                                      redis_port=redis_port, redis_pid=redis.pid,
                                      service_port=service_port, out=OUT)
        time.sleep(0.5)
        service = Service(builds[0][1], redis_port, service_port)
        runner_args.service_pid = service.process.pid
        runner = bench.Bench(runner_args)
        sample = runner.seed(runner.create_real_user())
        runner.write_sample_files(sample)
        runner.check_seed(sample)
        service.stop()
        service = None
        key = f"{bench.PREFIX}user:{sample[0][0]}"
        hgetall, figures = [], {name: [] for name, _ in builds}
        for round_number in range(args.rounds):
            runner.other = bench.OtherWork([redis.pid])
            hgetall.append(runner.redis_benchmark(key, 64, 200_000)["per_s"])
            order = builds if round_number % 2 == 0 else builds[::-1]
            for name, binary in order:
                service = Service(binary, redis_port, service_port)
                runner.other = bench.OtherWork([service.process.pid, redis.pid])
                runner.wrk("warm-up", 16, ["paths", runner.ids_file], duration=1, quiet=True)
                by_id = measure(runner, service, "by id", runner.ids_file)
                by_email = measure(runner, service, "by email", runner.emails_file)
                service.stop()
                service = None
                figures[name].append((by_id, by_email))
                bench.log(f"round {round_number + 1} {name}: by id {by_id['per_s']:,.0f}/s, "
                          f"by email {by_email['per_s']:,.0f}/s, service CPU / wrk CPU "
                          f"{by_id['service_us'] / by_id['wrk_us']:.2f} and "
                          f"{by_email['service_us'] / by_email['wrk_us']:.2f}")
    finally:
        if service is not None:
            service.stop()
        redis.terminate()
        redis.wait(timeout=15)

    ceiling = statistics.median(hgetall)
    print(f"\nMedians of {args.rounds} alternating rounds; HGETALL c=64 {ceiling:,.0f}/s "
          f"(each round: {', '.join(f'{x:,.0f}' for x in hgetall)})\n")
    print("| Build | GET by id c=64 | GET by email c=64 | service CPU / wrk CPU, by id "
          "| by email | errors |")
    print("|---|---|---|---|---|---|")
    medians = {}
    for name, runs in figures.items():
        m = medians[name] = {
            route: {figure: statistics.median(run[index][figure] for run in runs)
                    for figure in ("per_s", "service_us", "wrk_us")}
            | {"cpu_ratio": statistics.median(run[index]["service_us"] / run[index]["wrk_us"]
                                              for run in runs)}
            for index, route in enumerate(("id", "email"))
        }
        errors = sum(run[0]["errors"] + run[1]["errors"] for run in runs)
        print(f"| {name} | {m['id']['per_s']:,.0f}/s ({m['id']['per_s'] / ceiling:.0%}) "
              f"| {m['email']['per_s']:,.0f}/s ({m['email']['per_s'] / ceiling:.0%}) "
              f"| {m['id']['cpu_ratio']:.2f} | {m['email']['cpu_ratio']:.2f} | {errors} |")
    a, b = (medians[name] for name, _ in builds)
    print(f"\n{builds[1][0]} against {builds[0][0]}: "
          f"by id {b['id']['per_s'] / a['id']['per_s'] - 1:+.0%} req/s, "
          f"{b['id']['cpu_ratio'] / a['id']['cpu_ratio'] - 1:+.0%} service CPU per request; "
          f"by email {b['email']['per_s'] / a['email']['per_s'] - 1:+.0%} req/s, "
          f"{b['email']['cpu_ratio'] / a['email']['cpu_ratio'] - 1:+.0%} service CPU per request "
          "(relative to wrk's)")


if __name__ == "__main__":
    main()
