"""Benchmark: one 1 GiB file of ~200-byte lines into the local Kafka, side by side with peers.

    .venv/bin/python bench/bench_shipper.py [--size-mib 1024] [--rounds 3] [--bootstrap 127.0.0.1:9092] [--only ours,kcat,rsyslog]

Runs, each with acks=all and lz4 and into its own fresh topic:
  * ours:    `logtide ship --once` (one process)
  * kcat:    `kcat -P -l FILE` (librdkafka; the practical ceiling of a Kafka producer)
  * rsyslog: rsyslogd with imfile -> omkafka (Debian's rsyslog + rsyslog-kafka), a peer shipper
and prints lines/s, MiB/s, peak RSS and CPU seconds of each, and ours relative to the peers.
Measured alike for all three: lines/s = the file's lines / the time from the start of the process to
the moment the topic's end offset (records acknowledged in Kafka, polled every 50 ms over one
connection) reaches the line count; CPU seconds and peak RSS over the whole life of the process.
Every run is checked: the topic must hold exactly the file's line count when it is done. Our Python
sources are byte-compiled first, as an installed package's are (pip and Debian compile at install).
Needs the local Kafka (`logtide services up`) and the Debian packages kcat, rsyslog, rsyslog-kafka.
Not a test: it is run by hand, and takes a few minutes at full size.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@dataclass
class Result:
    name: str
    lines: int
    nbytes: int
    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    note: str = ""

    @property
    def lines_per_s(self) -> float:
        return self.lines / self.wall_s

    @property
    def mib_per_s(self) -> float:
        return self.nbytes / self.wall_s / (1 << 20)


def make_file(path: Path, size_mib: int) -> tuple[int, int]:
    """Lines of ~200 bytes, each unique (a counter, varying fields), written in large blocks."""
    target = size_mib << 20
    services = ["api", "billing", "search", "auth", "cart"]
    paths = ["/api/v1/items", "/api/v1/users/42", "/login", "/checkout", "/search?q=kafka+shipper"]
    n = 0
    written = 0
    with open(path, "wb", buffering=1 << 20) as f:
        while written < target:
            block = []
            for _ in range(10_000):
                svc = services[n % 5]
                line = (
                    f"2026-11-26T12:{(n // 60000) % 60:02d}:{(n // 1000) % 60:02d}.{n % 1000:03d}Z INFO "
                    f"service={svc} req={n:010d} user=u{n % 7919} path={paths[n % 5]} status={200 + (n % 7 == 0) * 300} "
                    f'latency_ms={n % 997} bytes={(n * 7) % 50000} msg="request handled by worker {n % 64}" pad=abcdefghijklmnopqrstuvwx'
                )
                block.append(line)
                n += 1
            data = ("\n".join(block) + "\n").encode()
            f.write(data)
            written += len(data)
    return n, written


async def _count(bootstrap: str, topic: str) -> int:
    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await c.start()
    try:
        return await _end_sum(c, topic)
    finally:
        await c.stop()


async def _end_sum(c, topic: str) -> int:  # type: ignore[no-untyped-def]
    from aiokafka import TopicPartition

    parts = c.partitions_for_topic(topic)
    if not parts:
        await c._client.force_metadata_update()
        parts = c.partitions_for_topic(topic) or set()
    tps = [TopicPartition(topic, p) for p in parts]
    if not tps:
        return 0
    ends = await c.end_offsets(tps)
    return sum(ends.values())


def count(bootstrap: str, topic: str) -> int:
    return asyncio.run(_count(bootstrap, topic))


class EndOffsetWatch:
    """Polls the topic's end offset (records acknowledged in Kafka) every `every_s` from a thread with
    one connection, and notes when it first reaches `target`: the same clock for every shipper."""

    def __init__(self, bootstrap: str, topic: str, target: int, every_s: float = 0.05) -> None:
        self.bootstrap, self.topic, self.target, self.every_s = bootstrap, topic, target, every_s
        self.count = 0
        self.changed_at = time.perf_counter()
        self.reached_at: float | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> EndOffsetWatch:
        self._thread.start()
        self._ready.wait(30)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    async def _run(self) -> None:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.errors import KafkaError

        c = AIOKafkaConsumer(bootstrap_servers=self.bootstrap)
        await c.start()
        try:
            await _end_sum(c, self.topic)
            self._ready.set()
            while not self._stop.is_set():
                try:
                    got = await _end_sum(c, self.topic)
                except KafkaError as exc:  # a topic the shipper has just created may have no leader yet
                    print(f"end offset of {self.topic}: {exc!r}; asking again", file=sys.stderr)
                    await c._client.force_metadata_update()
                    await asyncio.sleep(self.every_s)
                    continue
                now = time.perf_counter()
                if got != self.count:
                    self.count, self.changed_at = got, now
                if got >= self.target and self.reached_at is None:
                    self.reached_at = now
                await asyncio.sleep(self.every_s)
        finally:
            self._ready.set()
            await c.stop()


CREATED: list[str] = []  # deleted at the end: a broker with thousands of topics slows every client's start


def delete_topics(bootstrap: str, topics: list[str]) -> None:
    async def go() -> None:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.delete_topics(topics)
        finally:
            await admin.close()

    if topics:
        asyncio.run(go())


def create_topic(bootstrap: str, topic: str, partitions: int = 1) -> None:
    CREATED.append(topic)

    async def go() -> None:
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, partitions, 1)])
        finally:
            await admin.close()

    asyncio.run(go())


def run_measured(
    cmd: list[str], watch: EndOffsetWatch, *, exits: bool, stall_s: float = 60.0, env=None
) -> tuple[float, float, float, int]:  # type: ignore[no-untyped-def]
    """(wall s, cpu s, peak RSS MiB, exit code) of one process. Wall: from the start of the process
    to the moment the last line is in Kafka (`watch`), for every shipper alike. A process that does
    not exit by itself (`exits=False`: rsyslog) is stopped with SIGTERM then; one that stalls for
    `stall_s` too. CPU and RSS cover the whole life of the process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    waited = (0, 0, None)
    while True:  # wait4, not poll(): poll would reap the process and lose its rusage
        waited = os.wait4(proc.pid, os.WNOHANG)
        if waited[0]:
            break
        if watch.reached_at is not None and not exits:
            proc.send_signal(signal.SIGTERM)
            break
        if time.perf_counter() - max(watch.changed_at, t0) > stall_s:
            proc.send_signal(signal.SIGTERM)
            break
        time.sleep(0.02)
    _pid, status, ru = waited if waited[0] else os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    end = time.perf_counter()
    for _ in range(100):  # the last acknowledgement may reach the watcher just after the exit
        if watch.reached_at is not None:
            break
        time.sleep(0.02)
    wall = (watch.reached_at if watch.reached_at is not None else end) - t0
    if status != 0 and exits:
        sys.stderr.write(proc.stderr.read().decode(errors="replace")[-3000:] if proc.stderr else "")
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


def bench_ours(file: Path, lines: int, nbytes: int, bootstrap: str, work: Path) -> Result:
    topic = f"bench-ours-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic)
    cmd = [sys.executable, "-m", "logtide.cli", "ship", "--path", str(file), "--bootstrap", bootstrap,
           "--topic", topic, "--state-dir", str(work / "ours-state"), "--from-beginning", "--once",
           "--compression", "lz4"]  # fmt: skip
    with EndOffsetWatch(bootstrap, topic, lines) as watch:
        wall, cpu, rss, rc = run_measured(cmd, watch, exits=True)
    got = count(bootstrap, topic)
    return Result(
        "logtide ship", got, nbytes, wall, cpu, rss, "" if rc == 0 and got == lines else f"rc={rc} got={got}"
    )


def bench_kcat(file: Path, lines: int, nbytes: int, bootstrap: str) -> Result:
    topic = f"bench-kcat-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic)
    cmd = ["kcat", "-P", "-b", bootstrap, "-t", topic, "-p", "0", "-X", "acks=all", "-X", "enable.idempotence=true",
           "-X", "compression.codec=lz4", "-X", "linger.ms=20", "-l", str(file)]  # fmt: skip
    with EndOffsetWatch(bootstrap, topic, lines) as watch:
        wall, cpu, rss, rc = run_measured(cmd, watch, exits=True)
    got = count(bootstrap, topic)
    return Result(
        "kcat -P", got, nbytes, wall, cpu, rss, "" if rc == 0 and got == lines else f"rc={rc} got={got}"
    )


RSYSLOG_CONF = """
global(workDirectory="{work}")
module(load="imfile" mode="inotify")
module(load="omkafka")
template(name="raw" type="string" string="%rawmsg%")
input(type="imfile" File="{file}" Tag="bench" ruleset="tokafka" freshStartTail="off" reopenOnTruncate="on")
ruleset(name="tokafka" queue.type="LinkedList" queue.size="200000" queue.dequeueBatchSize="4096") {{
  action(type="omkafka" broker=["{bootstrap}"] topic="{topic}" template="raw" partitions.number="1"
         confParam=["compression.codec=lz4", "enable.idempotence=true", "linger.ms=20"]
         topicConfParam=["request.required.acks=-1"])
}}
"""


def bench_rsyslog(file: Path, lines: int, nbytes: int, bootstrap: str, work: Path) -> Result:
    topic = f"bench-rsyslog-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic)
    rs = work / "rsyslog"
    rs.mkdir()
    conf = rs / "rsyslog.conf"
    conf.write_text(RSYSLOG_CONF.format(work=rs, file=file, bootstrap=bootstrap, topic=topic))
    cmd = ["rsyslogd", "-n", "-f", str(conf), "-i", str(rs / "rsyslogd.pid")]
    with EndOffsetWatch(bootstrap, topic, lines) as watch:
        wall, cpu, rss, _rc = run_measured(cmd, watch, exits=False)
    got = count(bootstrap, topic)
    return Result(
        "rsyslog imfile->omkafka", got, nbytes, wall, cpu, rss, "" if got == lines else f"got={got}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--bootstrap", default=None, help="default: the local Kafka of `logtide services up`")
    ap.add_argument("--only", default="ours,kcat,rsyslog")
    ap.add_argument("--keep", action="store_true", help="keep the generated file, work directory and topics")
    ap.add_argument(
        "--rounds", type=int, default=1, help="repeat, rotating the order; prints the median ratio"
    )
    args = ap.parse_args()
    if args.bootstrap is None:
        from logtide.services import ensure_up

        args.bootstrap = ensure_up(elasticsearch=False)["kafka"]
    which = set(args.only.split(","))
    # as installed: byte-compiled (this environment may run with PYTHONDONTWRITEBYTECODE, and an
    # editable install never compiles), else every start of ours would compile its sources first
    dirs = [str(ROOT / d) for d in ("logtide", "shippers", "schemas", "streams", "sinks", "detectors")]
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", *dirs, sysconfig.get_paths()["purelib"]],
                   check=False, stdout=subprocess.DEVNULL)  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="bench-shipper-"))
    file = work / "bench.log"
    t0 = time.perf_counter()
    lines, nbytes = make_file(file, args.size_mib)
    print(f"file: {lines:,} lines, {nbytes / (1 << 20):.0f} MiB, {nbytes / lines:.0f} B/line "
          f"(written in {time.perf_counter() - t0:.1f}s); broker {args.bootstrap}; acks=all, lz4")  # fmt: skip
    rounds: list[list[Result]] = []
    order = [w for w in ("ours", "kcat", "rsyslog") if w in which]
    try:
        for rnd in range(args.rounds):
            results: list[Result] = []
            # rotate who goes first: on a shared machine the load changes from one run to the next
            for who in order[rnd % len(order) :] + order[: rnd % len(order)]:
                r = _bench_one(who, file, lines, nbytes, args.bootstrap, work, rnd)
                if r is not None:
                    results.append(r)
                    print(_row(r), flush=True)
            rounds.append(results)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
            delete_topics(args.bootstrap, CREATED)
    print()
    print(f"{'shipper':26} {'lines/s':>11} {'MiB/s':>8} {'peak RSS':>9} {'CPU s':>7} {'wall s':>7}  check")
    ratios: dict[str, list[tuple[float, float]]] = {}
    for n, results in enumerate(rounds, 1):
        if len(rounds) > 1:
            print(f"round {n}:")
        for r in results:
            print(_row(r))
        ours = next((r for r in results if r.name == "logtide ship"), None)
        if ours:
            for r in results:
                if r is not ours and (ours.note or r.note):  # a run that did not deliver every line
                    print(f"ours / {r.name}: not compared (a run did not deliver every line)")
                elif r is not ours:
                    ratios.setdefault(r.name, []).append(
                        (ours.lines_per_s / r.lines_per_s, ours.cpu_s / r.cpu_s)
                    )
                    print(f"ours / {r.name}: {ours.lines_per_s / r.lines_per_s:.2f}x throughput, "
                          f"{ours.cpu_s / r.cpu_s:.2f}x CPU seconds, {ours.peak_rss_mib / r.peak_rss_mib:.2f}x peak RSS")  # fmt: skip
    if len(rounds) > 1:
        for name, rs in ratios.items():
            thr = sorted(x for x, _ in rs)
            cpu = sorted(y for _, y in rs)
            print(f"median over {len(rs)} complete rounds, ours / {name}: {thr[len(thr) // 2]:.2f}x throughput "
                  f"(range {thr[0]:.2f}-{thr[-1]:.2f}), {cpu[len(cpu) // 2]:.2f}x CPU seconds")  # fmt: skip


def _bench_one(  # noqa: PLR0917 - a bench helper
    who: str, file: Path, lines: int, nbytes: int, bootstrap: str, work: Path, rnd: int
) -> Result | None:
    if who == "ours":
        return bench_ours(file, lines, nbytes, bootstrap, work / f"r{rnd}")
    if who == "kcat":
        if shutil.which("kcat"):
            return bench_kcat(file, lines, nbytes, bootstrap)
        print("kcat: not installed (apt-get install kcat)")
        return None
    if shutil.which("rsyslogd") and Path("/usr/lib/x86_64-linux-gnu/rsyslog/omkafka.so").exists():
        sub = work / f"r{rnd}"
        sub.mkdir(exist_ok=True)
        return bench_rsyslog(file, lines, nbytes, bootstrap, sub)
    print("rsyslog: not installed (apt-get install rsyslog rsyslog-kafka)")
    return None


def _row(r: Result) -> str:
    return (f"{r.name:26} {r.lines_per_s:>11,.0f} {r.mib_per_s:>8.1f} {r.peak_rss_mib:>7.0f}MB {r.cpu_s:>7.1f} "
            f"{r.wall_s:>7.1f}  {'ok' if not r.note else r.note}")  # fmt: skip


if __name__ == "__main__":
    main()
