"""Whole-pipeline chaos: the real shipper, a streams worker pair and the sink on a broker of their
own and the local Elasticsearch, while a generator writes known lines and a fault schedule runs.

Faults: kill -9 of each process, the broker stopped and started, Elasticsearch cut off (a TCP proxy
in front of it refuses and drops connections: the server itself is shared with other tests), a full
disk under the shipper's state directory (a tiny tmpfs), clock skew in the input. At the end every
written line must be in Elasticsearch exactly once and every closed window must equal a recount.
Used by tests/chaos (a short schedule) and bench/chaos.py (--minutes).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import yaml

BIN = Path(sys.executable).with_name("logtide")
SKEW_EVERY = 97  # every 97th line is stamped a day ahead: clock skew, kept out of the windows


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """One logtide process with its own log file; kill -9 and restart at will."""

    def __init__(self, name: str, args: list[str], log_dir: Path, env: dict[str, str]) -> None:
        self.name, self.args, self.env = name, args, env
        self.log = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        fh = self.log.open("ab")
        fh.write(f"\n===== start {self.starts} at {time.time():.1f}\n".encode())
        fh.flush()
        self.proc = subprocess.Popen([str(BIN), *self.args], stdout=fh, stderr=subprocess.STDOUT, env=self.env,
                                     stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        fh.close()
        self.starts += 1

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 60) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill9()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


class TcpProxy:
    """Loopback TCP forwarder that can be cut (connections dropped, new ones refused) and healed."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._cut = threading.Event()
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._srv = socket.create_server(("127.0.0.1", self.port))
        self._srv.settimeout(0.2)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                c, _ = self._srv.accept()
            except OSError:
                continue
            if self._cut.is_set():
                c.close()
                continue
            try:
                u = socket.create_connection(self.target, timeout=5)
            except OSError:
                c.close()
                continue
            with self._lock:
                self._conns += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.close()

    def cut(self) -> None:
        self._cut.set()
        with self._lock:
            for s in self._conns:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
            self._conns.clear()

    def heal(self) -> None:
        self._cut.clear()

    def close(self) -> None:
        self._stop.set()
        self.cut()
        self._srv.close()


class Generator(threading.Thread):
    """Writes JSON lines with a sequence number at a steady rate into two files (one rotated once)."""

    def __init__(self, folder: Path, rate: float) -> None:
        super().__init__(daemon=True)
        self.folder, self.rate = folder, rate
        self.written: list[dict[str, Any]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        seq = 0
        t0 = time.monotonic()
        files = {name: (self.folder / f"{name}.log").open("a") for name in ("api", "worker")}
        rotated = False
        while not self.halt.is_set():
            due = int((time.monotonic() - t0) * self.rate)
            while seq < due:
                name = "api" if seq % 3 else "worker"
                ts = datetime.now(UTC)
                skewed = seq % SKEW_EVERY == SKEW_EVERY - 1
                if skewed:
                    ts += timedelta(days=1)
                rec = {"@timestamp": ts.isoformat(), "message": f"chaos line {seq}", "seq": seq,
                       "level": "error" if seq % 10 == 0 else "info"}  # fmt: skip
                files[name].write(orjson.dumps(rec).decode() + "\n")
                files[name].flush()
                self.written.append({"seq": seq, "ts": ts, "skewed": skewed, "file": name})
                seq += 1
            if not rotated and seq > self.rate * 20:  # rename-and-create rotation of one file, once
                files["api"].close()
                os.rename(self.folder / "api.log", self.folder / "api.log.1")
                files["api"] = (self.folder / "api.log").open("a")
                rotated = True
            time.sleep(0.02)
        for f in files.values():
            f.close()


@dataclass
class Fault:
    at: float  # seconds after the start
    kind: str
    duration: float = 0.0
    end_time: float = 0.0  # wall clock when the fault was lifted
    recovered_s: float | None = None


@dataclass
class Report:
    lines_written: int = 0
    lines_expected_in_es: int = 0
    lost: int = 0
    duplicates: int = 0
    windows_checked: int = 0
    windows_open: int = 0  # windows of the run still open at the end (the last ones: lateness)
    windows_wrong: list[str] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    died: list[str] = field(default_factory=list)  # processes found dead at the end (nobody restarted them)
    late: Counter[str] = field(default_factory=Counter)  # late-event dead letters of log.events, by reason

    def text(self) -> str:
        kinds = Counter(f.kind for f in self.faults)
        rec = ", ".join(
            f"{f.kind}@{f.at:.0f}s→{f'{f.recovered_s:.1f}s' if f.recovered_s is not None else 'n/a'}"
            for f in self.faults
        )
        return (f"lines written {self.lines_written}, expected in Elasticsearch {self.lines_expected_in_es}, "
                f"lost {self.lost}, duplicated {self.duplicates}; windows checked {self.windows_checked}, "
                f"wrong {len(self.windows_wrong)}, still open {self.windows_open}; late log.events dead letters {dict(self.late) or 0}; faults {dict(kinds)}; died by themselves: {self.died or 'none'}; "
                f"time to recover: {rec}")  # fmt: skip


def schedule(duration_s: float, seed: int = 7) -> list[Fault]:
    """A fault every ~10 s, each kind in turn, in a seeded random order per round."""
    kinds = ["kill_shipper", "kill_streams", "es_outage", "kill_sink", "broker_restart", "disk_full"]
    rng = random.Random(seed)
    out, t = [], 8.0
    while t < duration_s - 10:
        rnd = kinds[:]
        rng.shuffle(rnd)
        for k in rnd:
            if t >= duration_s - 10:
                break
            dur = {"es_outage": 12.0, "broker_restart": 4.0, "disk_full": 10.0}.get(k, 2.0)
            out.append(Fault(at=t, kind=k, duration=dur))
            t += dur + rng.uniform(6, 10)
    return out


class ChaosRun:
    def __init__(self, root: Path, es_url: str, rate: float = 20.0) -> None:
        self.root = root
        self.rate = rate
        self.unique = os.urandom(4).hex()
        self.prefix = f"chaos{self.unique}."
        self.index = f"lchaos{self.unique}"
        self.kafka_port = free_port()
        self.ctrl_port = free_port()
        self.kafka_env = {**os.environ, "LOGTIDE_STATE": str(root / "kafka-state"),
                          "LOGTIDE_KAFKA_PORT": str(self.kafka_port),
                          "LOGTIDE_KAFKA_CONTROLLER_PORT": str(self.ctrl_port)}  # fmt: skip
        self.bootstrap = f"127.0.0.1:{self.kafka_port}"
        host, port = es_url.rsplit("//", 1)[-1].split(":")
        self.es_url = es_url
        self.es_proxy = TcpProxy((host, int(port)))
        self.logs = root / "logs"
        self.data = root / "input"
        self.state = root / "shipper-state"
        for d in (self.logs, self.data, self.state):
            d.mkdir(parents=True, exist_ok=True)
        self.mounted = False
        self.procs: dict[str, Proc] = {}
        self.idle_s = 30.0  # streams.window.idle_timeout_seconds: the rotated file's source stops holding windows

    # -- set-up -------------------------------------------------------------------------------
    def _services(self, action: str) -> None:
        args = [str(BIN), "services", action, "--only", "kafka"]
        subprocess.run(args, env=self.kafka_env, check=True, capture_output=True, timeout=300)

    def _config(self) -> Path:
        doc = {
            "kafka": {"bootstrap_servers": [self.bootstrap]},
            "topics": {"prefix": self.prefix, "partitions": 4},
            "logging": {"level": "INFO"},
            "shipper": {"inputs": [{"paths": [str(self.data / "*.log")], "parser": {"type": "json"},
                                    "start_position": "beginning", "labels": {"source": "chaos"}}]},
            "streams": {"app_id": f"logtide-streams-chaos{self.unique}", "metrics_port": 0, "web_port": 0,
                        "window": {"size_seconds": 10, "idle_timeout_seconds": self.idle_s}},
            "sinks": {"group_id": f"chaos-sink-{self.unique}", "batch_wait_ms": 200,
                      "sources": ["logs.enriched", "metrics.agg", "deadletter"],
                      "elasticsearch": {"hosts": [f"http://127.0.0.1:{self.es_proxy.port}"], "index_prefix": self.index}},
        }
        path = self.root / "chaos.yaml"
        path.write_text(yaml.safe_dump(doc))
        return path

    def setup(self) -> None:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(self.state)], check=True,
                       capture_output=True)  # fmt: skip
        self.mounted = True
        self._services("up")
        cfg = self._config()
        subprocess.run([str(BIN), "topics", "create", "--config", str(cfg)], check=True, capture_output=True,
                       timeout=120)  # fmt: skip
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.procs = {
            "shipper": Proc("shipper", ["ship", "--config", str(cfg), "--state-dir", str(self.state)], self.logs, env),
            "streams-a": Proc("streams-a", ["streams", "--config", str(cfg), "--state-dir", str(self.root / "sa")],
                              self.logs, env),
            "streams-b": Proc("streams-b", ["streams", "--config", str(cfg), "--state-dir", str(self.root / "sb")],
                              self.logs, env),
            "sink": Proc("sink", ["sink", "--config", str(cfg)], self.logs, env),
        }  # fmt: skip
        for p in self.procs.values():
            p.start()

    def teardown(self) -> None:
        for p in self.procs.values():
            p.stop(30)
        with contextlib.suppress(Exception):
            self._services("down")
        self.es_proxy.close()
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.state)], check=False, capture_output=True)
        with contextlib.suppress(Exception):
            from elasticsearch import Elasticsearch

            with Elasticsearch(self.es_url) as es:
                es.indices.delete(index=f"{self.index}-*", ignore_unavailable=True)

    # -- faults ---------------------------------------------------------------------------------
    def _apply(self, f: Fault) -> None:
        rng = random.Random(int(f.at * 1000))
        if f.kind == "kill_shipper":
            self.procs["shipper"].kill9()
            time.sleep(f.duration)
            self.procs["shipper"].start()
        elif f.kind == "kill_streams":
            p = self.procs[rng.choice(["streams-a", "streams-b"])]
            p.kill9()
            time.sleep(f.duration)
            p.start()
        elif f.kind == "kill_sink":
            self.procs["sink"].kill9()
            time.sleep(f.duration)
            self.procs["sink"].start()
        elif f.kind == "es_outage":
            self.es_proxy.cut()
            time.sleep(f.duration)
            self.es_proxy.heal()
        elif f.kind == "broker_restart":
            self._services("down")
            time.sleep(f.duration)
            self._services("up")
        elif f.kind == "disk_full":
            filler = self.state / "filler"
            with contextlib.suppress(OSError), filler.open("wb") as fh:
                while True:
                    fh.write(b"\0" * 4096)
                    fh.flush()
            time.sleep(f.duration)
            filler.unlink(missing_ok=True)
        f.end_time = time.time()

    def _es_count(self) -> int:
        from elasticsearch import Elasticsearch

        try:
            with Elasticsearch(self.es_url, request_timeout=5) as es:
                es.indices.refresh(index=f"{self.index}-*", ignore_unavailable=True)
                return int(es.count(index=f"{self.index}-logs*", ignore_unavailable=True)["count"])
        except Exception:
            return -1

    def run(self, duration_s: float, faults: list[Fault]) -> Report:
        gen = Generator(self.data, self.rate)
        samples: list[tuple[float, int]] = []
        stop_mon = threading.Event()

        def monitor() -> None:
            while not stop_mon.is_set():
                samples.append((time.time(), self._es_count()))
                time.sleep(1.0)

        mon = threading.Thread(target=monitor, daemon=True)
        t0 = time.time()
        gen.start()
        mon.start()
        for f in faults:
            wait = t0 + f.at - time.time()
            if wait > 0:
                time.sleep(wait)
            self._apply(f)
        left = t0 + duration_s - time.time()
        if left > 0:
            time.sleep(left)
        gen.halt.set()
        gen.join()
        report = self._settle(gen, samples, faults)
        stop_mon.set()
        mon.join(5)
        return report

    # -- the verdict ----------------------------------------------------------------------------
    def _settle(self, gen: Generator, samples: list[tuple[float, int]], faults: list[Fault],
                timeout_s: float = 240) -> Report:  # fmt: skip
        from elasticsearch import Elasticsearch
        from elasticsearch.helpers import scan

        rep = Report(lines_written=len(gen.written), faults=faults)
        rep.died = [name for name, p in self.procs.items() if not p.alive()]
        rep.lines_expected_in_es = len(gen.written)
        deadline = time.time() + timeout_s
        seen: Counter[int] = Counter()
        while time.time() < deadline:
            seen = Counter()
            with Elasticsearch(self.es_url, request_timeout=30) as es:
                es.indices.refresh(index=f"{self.index}-*", ignore_unavailable=True)
                for hit in scan(es, index=f"{self.index}-logs*", query={"query": {"match_all": {}}},
                                _source=["message"], ignore_unavailable=True):  # fmt: skip
                    msg = hit["_source"].get("message", "")
                    if msg.startswith("chaos line "):
                        seen[int(msg.rsplit(" ", 1)[1])] += 1
            if len(seen) >= len(gen.written):
                break
            time.sleep(3)
        rep.lost = sum(1 for w in gen.written if seen[w["seq"]] == 0)
        rep.duplicates = sum(c - 1 for c in seen.values() if c > 1)
        for f in faults:  # recovery: the first second after the fault at which ES holds more lines
            before = max((n for t, n in samples if t <= f.end_time), default=0)
            later = [t for t, n in samples if t > f.end_time and n > before]
            f.recovered_s = (later[0] - f.end_time) if later else None
        self._check_windows(gen, rep)
        return rep

    def _check_windows(self, gen: Generator, rep: Report) -> None:
        """Closed `log.events` windows (summed over series) against a recount of the lines written,
        each line once (a line the shipper sent twice counts once), the lines stamped a day ahead
        excluded (beyond `max_future_skew_seconds`: forwarded flagged, kept out of windows by design).

        The rotated file stops speaking, and its source holds windows back until it is idle
        (`idle_timeout_seconds`, 30 s here, counted while its partition is read to the end); the wait
        lets every window of the run close but the last two (their lateness has not passed)."""
        want: Counter[str] = Counter()
        for w in gen.written:
            if not w["skewed"]:
                ts: datetime = w["ts"]
                start = ts.replace(second=ts.second - ts.second % 10, microsecond=0)
                want[start.isoformat()[:19]] += 1
        deadline = time.time() + self.idle_s + 90
        while True:
            aggs = asyncio.run(self._read_topic(self.prefix + "metrics.agg"))
            closed = {a["window"]["start"][:19] for a in aggs if a.get("series", {}).get("metric") == "log.events"}
            if sum(1 for s in want if s > max(closed, default="")) <= 2 or time.time() > deadline:
                break
            time.sleep(5)
        latest: dict[str, dict[str, Any]] = {}
        versions: dict[str, list[int]] = {}
        for a in aggs:
            if a.get("series", {}).get("metric") == "log.events":
                latest[a["event"]["id"]] = a
                versions.setdefault(a["event"]["id"], []).append(int(a["stats"]["count"]))
        for i, v in versions.items():
            if len(set(v)) > 1:
                rep.notes.append(f"window {latest[i]['window']['start']} {latest[i]['series']['key']} emitted with "
                                 f"different counts {v}")
        self._check_points(rep)
        got: Counter[str] = Counter()
        for a in latest.values():
            got[a["window"]["start"][:19]] += int(a["stats"]["count"])
        # every window up to the newest closed one, a missing one included (its events all late)
        last = max(got, default="")
        for start in sorted(set(got) | {s for s in want if s <= last}):
            rep.windows_checked += 1
            if want.get(start, 0) != got.get(start, 0):  # zero-filled windows of a quiet series count 0
                rep.windows_wrong.append(f"{start}: counted {got.get(start, 0)}, written {want.get(start, 0)}")
        rep.windows_open = sum(1 for s in want if s > last)
        if not got:
            rep.notes.append("no closed log.events window was read from metrics.agg")
        for d in asyncio.run(self._read_topic(self.prefix + "deadletter")):
            err = d.get("error", {})
            if err.get("type") != "late_event":
                continue
            original = base64.b64decode(d["dead_letter"]["original_base64"])
            if b'"m":"log.events"' not in original:
                continue
            msg = err.get("message", "")
            n = re.search(r"(\d+) event\(s\)", msg)
            rep.late[msg.split(":", 1)[0]] += int(n.group(1)) if n else 1
            rep.notes.append("late: " + msg[:400])

    def _check_points(self, rep: Report) -> None:
        """Batch messages of one series and raw partition whose offset ranges overlap without being the
        same range (a replay is the same range, skipped by the aggregator's marks; an overlap would be
        folded twice)."""
        from logtide.streams.batch import BATCH_TAG, SeriesBatch

        ids: Counter[bytes] = Counter()
        for raw in asyncio.run(self._read_topic(self.prefix + "logs.raw", raw=True)):
            m = re.search(rb'"event":\{"id":"([^"]+)"', raw) or re.search(rb'"id":"([^"]+)"', raw)
            if m:
                ids[m.group(1)] += 1
        resent = sum(n - 1 for n in ids.values() if n > 1)
        if resent:
            rep.notes.append(f"{resent} lines are in logs.raw more than once (the shipper sent them again)")
        topic = f"logtide-streams-chaos{self.unique}-points"
        ranges: dict[tuple[str, str], set[tuple[int, int]]] = {}
        for raw in asyncio.run(self._read_topic(topic, raw=True)):
            if raw[:5] == BATCH_TAG:
                b = SeriesBatch.from_bytes(raw)
                if b.metric == "log.events":
                    ranges.setdefault((b.key, b.src), set()).add((b.lo, b.hi))
        for (key, src), rs in ranges.items():
            spans = sorted(rs)
            for (lo1, hi1), (lo2, hi2) in itertools.pairwise(spans):
                if lo2 <= hi1:
                    rep.notes.append(f"points overlap in {key} from {src}: {lo1}..{hi1} and {lo2}..{hi2}")

    async def _read_topic(self, topic: str, idle_s: float = 5.0, raw: bool = False) -> list[Any]:
        """Every record up to the end offsets as of the first fetch (the points topic never goes quiet:
        it gets a tick every second)."""
        from aiokafka import AIOKafkaConsumer

        c = AIOKafkaConsumer(topic, bootstrap_servers=self.bootstrap, auto_offset_reset="earliest", group_id=None,
                             enable_auto_commit=False)  # fmt: skip
        await c.start()
        out: list[Any] = []
        try:
            ends: dict[Any, int] | None = None
            deadline = time.monotonic() + 10
            while ends is None and time.monotonic() < deadline:
                if c.assignment():
                    ends = await c.end_offsets(list(c.assignment()))
                else:
                    await asyncio.sleep(0.2)
            left = {tp for tp, end in (ends or {}).items() if end > 0}
            quiet = time.monotonic()
            while left and time.monotonic() - quiet < idle_s * 6:
                batch = await c.getmany(timeout_ms=500)
                for tp, recs in batch.items():
                    out += [r.value if raw else orjson.loads(r.value) for r in recs if r.offset < ends[tp]]
                    if recs:
                        quiet = time.monotonic()
                        if recs[-1].offset >= ends[tp] - 1:
                            left.discard(tp)
        finally:
            await c.stop()
        return out
