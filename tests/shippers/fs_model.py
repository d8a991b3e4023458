"""A simulated filesystem and an interpreter that drives the shipper's pure decision core.

In the spirit of Vector's file-source model tests (lib/file-source/src/file_watcher/tests/): the
filesystem is a dict of inodes and directory entries (rename, unlink, truncate, append, copy, inode
reuse, a clock); `SimShipper` applies `shippers.reconcile.plan` and `at_end_of_data` exactly as
`Shipper` and `Harvester` do (actions in order, Persist before Start, a truncation persisted before
new content is sent, offsets advanced only over acknowledged sends) with the real `LineReader`;
the "broker" delivers each harvester's sends in order and acknowledges them when told to. A crash
keeps what the registry held when last persisted; sends in flight at the crash may or may not have
been delivered (a prefix per file, as Kafka's idempotent producer).

The model of a perfect shipper: every line written that is not destroyed before it could be read
is delivered at least once, in order per file; nothing is delivered that was not written; a line
delivered again from the same file keeps its event id, and two lines never share one; no state
outlives its file once things are quiet.

Ops are (code, argument) pairs of small integers so that hypothesis generates and shrinks them
cheaply; `describe` prints a sequence readably.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

from logtide.shippers.checkpoint_store import FileState
from logtide.shippers.line_reader import LineReader
from logtide.shippers.reconcile import (
    Follow,
    Forget,
    InputRules,
    Orphan,
    Persist,
    Release,
    Rules,
    Running,
    Seen,
    Skip,
    Start,
    Store,
    Truncations,
    Wake,
    at_end_of_data,
    check_chunk,
    head_hash,
    heads_needed,
    new_fp_id,
    plan,
)

DEV = 1
LIVE = "app.log"
FINGERPRINT = 24  # a few lines: heads grow while files grow, as with 1 KiB on real files
CHUNK = 40  # bytes per read: lines are cut across reads
CLOSE_INACTIVE = 30.0
CLOSE_REMOVED = 2.0

OPS = (
    "write", "rename", "reopen", "copytruncate", "truncate", "delete", "rename_away", "scan", "read", "ack",
    "checkpoint", "tick", "crash", "restart", "sync",
)  # fmt: skip


class ModelViolation(AssertionError):
    pass


@dataclass
class Inode:
    data: bytearray = field(default_factory=bytearray)
    links: int = 0
    opens: int = 0
    mtime: float = 0.0
    lines: list[tuple[int, bytes]] = field(default_factory=list)  # (start offset, line) in the file


class SimFS:
    """Inodes and one directory; freed inode numbers are reused lowest first, as ext4 often does."""

    def __init__(self, clock: list[float]) -> None:
        self.inodes: dict[int, Inode] = {}
        self.names: dict[str, int] = {}
        self.free: list[int] = []
        self.next_ino = 10
        self.clock = clock
        self.on_destroy: Any = None  # callback(ino, lines) when bytes vanish

    def _new_inode(self) -> int:
        if self.free:
            self.free.sort()
            ino = self.free.pop(0)
        else:
            ino = self.next_ino
            self.next_ino += 1
        self.inodes[ino] = Inode(mtime=self.clock[0])
        return ino

    def create(self, name: str) -> int:
        ino = self._new_inode()
        self.link(name, ino)
        return ino

    def link(self, name: str, ino: int) -> None:
        if name in self.names:
            self.unlink(name)
        self.names[name] = ino
        self.inodes[ino].links += 1

    def unlink(self, name: str) -> None:
        ino = self.names.pop(name)
        self.inodes[ino].links -= 1
        self._maybe_free(ino)

    def rename(self, old: str, new: str) -> None:
        ino = self.names[old]
        if new in self.names:
            self.unlink(new)
        del self.names[old]
        self.names[new] = ino

    def open(self, ino: int) -> None:
        self.inodes[ino].opens += 1

    def close(self, ino: int) -> None:
        self.inodes[ino].opens -= 1
        self._maybe_free(ino)

    def _maybe_free(self, ino: int) -> None:
        node = self.inodes[ino]
        if node.links == 0 and node.opens == 0:
            if self.on_destroy:
                self.on_destroy(ino, node.lines)
            del self.inodes[ino]
            self.free.append(ino)

    def append(self, ino: int, line: bytes) -> None:
        node = self.inodes[ino]
        node.lines.append((len(node.data), line))
        node.data += line + b"\n"
        node.mtime = self.clock[0]

    def truncate(self, ino: int) -> None:
        node = self.inodes[ino]
        if self.on_destroy:
            self.on_destroy(ino, node.lines)
        node.data = bytearray()
        node.lines = []
        node.mtime = self.clock[0]

    def copy(self, src: str, dst: str) -> None:
        node = self.inodes[self.names[src]]
        ino = self.create(dst)
        new = self.inodes[ino]
        new.data = bytearray(node.data)
        new.lines = list(node.lines)
        new.mtime = self.clock[0]

    def scan(self) -> list[Seen]:
        """What `file_watcher.scan` returns for the pattern `app.log*`."""
        return [
            Seen(name, 0, DEV, ino, len(self.inodes[ino].data), self.inodes[ino].mtime)
            for name, ino in sorted(self.names.items())
            if name.startswith(LIVE)
        ]


@dataclass
class Send:
    records: list[tuple[bytes, tuple[str, int]]]  # (line, event id = (fp_id, offset))
    entry: list[Any]  # [end offset, acked]
    ino: int


class SimHarvester:
    def __init__(self, sim: SimShipper, state: FileState) -> None:
        self.sim = sim
        self.state = state
        self.ino = state.ino
        self.read_offset = state.offset
        self.reader = LineReader(1 << 16)
        self.reader.reset(state.offset)
        self.pending: deque[list[Any]] = deque()
        self.inflight: deque[Send] = deque()
        self.orphaned = False
        self.done = False
        self.last_data = sim.clock[0]
        sim.fs.open(self.ino)

    def close(self) -> None:
        if not self.done:
            self.done = True
            self.sim.fs.close(self.ino)

    def read(self) -> bool:
        """One iteration of `Harvester._loop`: a chunk, or the end-of-data decision (True: it moved)."""
        if self.done:
            return False
        sim = self.sim
        node = sim.fs.inodes[self.ino]
        data = bytes(node.data[self.read_offset : self.read_offset + CHUNK])
        head = bytes(node.data[:FINGERPRINT])
        ok, grown = check_chunk(self.read_offset, data, head, self.state.head_len, self.state.head_hash)
        if data and ok:
            if grown:
                self.state.head_len, self.state.head_hash = grown, head_hash(head[:grown])
                sim.persist()
            self.last_data = sim.clock[0]
            lines = self.reader.feed(data, self.read_offset)
            self.read_offset += len(data)
            records = [(raw, (self.state.fp_id, start)) for start, _stop, raw, _t in lines if raw]
            self._submit(records, self.reader.consumed_offset)
            return True
        end = at_end_of_data(
            read_offset=self.read_offset, size=len(node.data), nlink=node.links, head=head,
            stored_head_len=self.state.head_len, stored_head_hash=self.state.head_hash,
            orphaned=self.orphaned, once=False, idle=sim.clock[0] - self.last_data,
            close_inactive_s=CLOSE_INACTIVE, close_removed_after_s=CLOSE_REMOVED,
            multiline_pending=False, multiline_flush_s=0.0,
        )  # fmt: skip
        if end.kind == "truncated":
            sim.on_truncate(self.state, self.state.offset)
            self.pending.clear()
            self.read_offset = 0
            self.reader.reset(0)
            self.state.head_len, self.state.head_hash = len(head), head_hash(head)
            self.state.fp_id = new_fp_id(self.state.dev, self.state.ino, sim.clock[0], self.state.fp_id)
            self.state.offset = 0
            sim.persist()
            return True
        if end.grow_head:
            self.state.head_len, self.state.head_hash = len(head), head_hash(head)
        self.orphaned = end.orphaned
        if end.kind in ("finish", "close"):
            if end.kind == "finish":
                tail = self.reader.flush()
                if tail is not None and tail[2]:
                    self._submit([(tail[2], (self.state.fp_id, tail[0]))], self.reader.consumed_offset)
            self.drain()
            self.close()
            return True
        return False

    def _submit(self, records: list[tuple[bytes, tuple[str, int]]], end: int) -> None:
        entry = [end, False]
        self.pending.append(entry)
        if not records:
            entry[1] = True
            self._advance()
            return
        self.inflight.append(Send(records, entry, self.ino))

    def ack(self) -> None:
        """The broker takes the oldest send of this file (delivered) and acknowledges it."""
        if self.inflight:
            s = self.inflight.popleft()
            self.sim.deliver(s)
            s.entry[1] = True
            self._advance()

    def drain(self) -> None:
        while self.inflight:
            self.ack()

    def _advance(self) -> None:
        while self.pending and self.pending[0][1]:
            self.state.offset = self.pending.popleft()[0]
            self.state.updated = self.sim.clock[0]


class SimShipper:
    """`Shipper` over the simulated filesystem: one process life; `crash`/`restart` start another."""

    def __init__(self, fs: SimFS, clock: list[float], model: Model) -> None:
        self.fs = fs
        self.clock = clock
        self.model = model
        self.rules = Rules(FINGERPRINT, (InputRules(LIVE + "*", "beginning", None),))
        self.persisted: dict[str, FileState] = {}
        self.boot()

    def boot(self) -> None:
        self.states = {k: replace(s) for k, s in self.persisted.items()}
        self.active: dict[str, SimHarvester] = {}
        self.truncations: Truncations = {}
        self.initial = True

    def persist(self) -> None:
        self.persisted = {k: replace(s) for k, s in self.states.items()}

    def on_truncate(self, state: FileState, old_offset: int) -> None:
        if state.head_len >= FINGERPRINT:
            self.truncations[state.head_hash] = (old_offset, self.clock[0])

    def deliver(self, send: Send) -> None:
        self.model.delivered(send)

    def reconcile(self) -> None:
        running = {
            k: Running(h.state.path, h.read_offset, h.done, h.orphaned) for k, h in self.active.items()
        }
        seen = self.fs.scan()
        need = heads_needed(seen, self.states, running)
        heads = {p: bytes(self.fs.inodes[self.fs.names[p]].data[:FINGERPRINT]) for p in need}
        result = plan(seen, heads, self.states, running, truncations=self.truncations, rules=self.rules,
                      initial=self.initial, now=self.clock[0])  # fmt: skip
        self.initial = False
        self.truncations = result.truncations
        starts = []
        persist = False
        for a in result.actions:
            if isinstance(a, Store):
                self.states[a.state.key] = a.state
            elif isinstance(a, Start):
                starts.append(a)
            elif isinstance(a, Follow):
                self.active[a.key].state.path = a.path
            elif isinstance(a, Orphan):
                self.active[a.key].orphaned = True
            elif isinstance(a, Release):
                if self.active[a.key].done:
                    del self.active[a.key]
            elif isinstance(a, Forget):
                self.states.pop(a.key, None)
            elif isinstance(a, Persist):
                persist = True
            elif isinstance(a, Wake | Skip):
                pass
        if persist:
            self.persist()
        for a in starts:
            state = self.states[a.key]
            if self.fs.names.get(state.path) != state.ino:
                continue  # replaced before it could be opened (Harvester.run checks the same)
            self.active[a.key] = SimHarvester(self, state)

    def harvesters(self) -> list[SimHarvester]:
        return [h for _k, h in sorted(self.active.items()) if not h.done]

    def stop(self) -> None:
        """SIGTERM: sends drained (acknowledged), final checkpoint."""
        for h in self.harvesters():
            h.drain()
            h.close()
        self.persist()
        self.boot()

    def crash(self, delivered_prefix: int) -> None:
        """kill -9: the registry as last persisted survives; in-flight sends maybe delivered."""
        for h in self.harvesters():
            for s in list(h.inflight)[:delivered_prefix]:
                self.deliver(s)
            h.inflight.clear()
            h.close()
        self.boot()

    def quiesce(self) -> None:
        """Run until nothing moves: scans, reads and acks (the end of a test, or `sync`)."""
        for _ in range(10_000):
            before = self.model.progress()
            self.reconcile()
            moved = False
            for h in self.harvesters():
                for _ in range(100_000):
                    step = h.read()
                    h.drain()
                    if not step:
                        break
                    moved = True
            if not moved and self.model.progress() == before:
                return
        raise ModelViolation("the shipper never settles")


class Model:
    """What was written, where it is, what was delivered; the properties are checked in `check`."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.order: dict[bytes, tuple[int, int]] = {}  # line -> (stream, position in it)
        self.exempt: set[bytes] = set()  # destroyed before it could be delivered
        self.first: dict[bytes, int] = {}  # line -> index of its first delivery
        self.ids: dict[tuple[bytes, int], tuple[str, int]] = {}  # (line, inode) -> event id
        self.last_pos: dict[tuple[int, int], int] = {}  # (inode, stream) -> position of the last new line
        self.id_owner: dict[tuple[str, int], bytes] = {}
        self.n_delivered = 0
        self.fs: SimFS | None = None
        self.where: dict[bytes, set[int]] = {}  # line -> inodes holding it

    def progress(self) -> int:
        return self.n_delivered

    def wrote(self, line: bytes, stream: int, pos: int, ino: int) -> None:
        self.written.append(line)
        self.order[line] = (stream, pos)
        self.where.setdefault(line, set()).add(ino)

    def copied(self, lines: list[tuple[int, bytes]], ino: int) -> None:
        for _o, line in lines:
            self.where.setdefault(line, set()).add(ino)

    def destroyed(self, ino: int, lines: list[tuple[int, bytes]]) -> None:
        for _o, line in lines:
            holders = self.where.get(line)
            if holders is None:
                continue
            holders.discard(ino)
            if not holders and line not in self.first:
                self.exempt.add(line)

    def delivered(self, send: Send) -> None:
        for line, ev_id in send.records:
            if line not in self.order:
                raise ModelViolation(f"delivered a line never written: {line!r} (id {ev_id})")
            self.first.setdefault(line, self.n_delivered)
            self.n_delivered += 1
            prev = self.ids.get((line, send.ino))
            if prev is None:  # new from this file: in order within it
                self.ids[(line, send.ino)] = ev_id
                stream, pos = self.order[line]
                last = self.last_pos.get((send.ino, stream), -1)
                if pos < last:
                    raise ModelViolation(
                        f"{line!r} (position {pos}) delivered after position {last} of its file"
                    )
                self.last_pos[(send.ino, stream)] = pos
            elif prev != ev_id:
                raise ModelViolation(
                    f"{line!r} delivered again from inode {send.ino} with a new id {ev_id} (was {prev})"
                )
            owner = self.id_owner.setdefault(ev_id, line)
            if owner != line:
                raise ModelViolation(f"event id {ev_id} given to {owner!r} and to {line!r}")

    def check(self, sim: SimShipper) -> None:
        matched = {ino for name, ino in sim.fs.names.items() if name.startswith(LIVE)}
        missing = [
            w for w in self.written
            if w not in self.first and w not in self.exempt and self.where[w] & matched
        ]  # fmt: skip
        if missing:
            raise ModelViolation(f"{len(missing)} of {len(self.written)} lines lost, e.g. {missing[:3]}")
        live = {f"{DEV}:{ino}" for name, ino in sim.fs.names.items() if name.startswith(LIVE)}
        stale = [k for k in sim.states if k not in live]
        if stale:
            raise ModelViolation(f"states outlive their files: {stale} (live {sorted(live)})")


class World:
    """One run of the interpreter: the filesystem, the writer, the shipper and the model."""

    def __init__(self) -> None:
        self.clock = [1_000_000.0]
        self.model = Model()
        self.fs = SimFS(self.clock)
        self.fs.on_destroy = self.model.destroyed
        self.model.fs = self.fs
        self.writer: int | None = None  # the inode the application writes to (it holds it open)
        self.stream = 0  # a new stream per (inode, content since its last truncation)
        self.stream_of: dict[int, int] = {}
        self.pos: dict[int, int] = {}
        self.n = 0
        self.rotations = 0
        self.sim = SimShipper(self.fs, self.clock, self.model)

    def _writer_inode(self) -> int:
        if self.writer is None or self.writer not in self.fs.inodes:
            self._reopen()
        assert self.writer is not None
        return self.writer

    def _reopen(self) -> None:
        if self.writer is not None and self.writer in self.fs.inodes:
            self.fs.close(self.writer)
        ino = self.fs.names.get(LIVE)
        if ino is None:
            ino = self.fs.create(LIVE)
            self._new_stream(ino)
        self.fs.open(ino)
        self.writer = ino

    def _stream(self, ino: int) -> int:
        if ino not in self.stream_of:
            self.stream += 1
            self.stream_of[ino] = self.stream
            self.pos[ino] = 0
        return self.stream_of[ino]

    def _new_stream(self, ino: int) -> None:
        self.stream_of.pop(ino, None)

    def apply(self, code: int, arg: int) -> None:
        op = OPS[code % len(OPS)]
        fs, sim = self.fs, self.sim
        self.clock[0] += 0.1
        if op == "write":
            ino = self._writer_inode()
            stream = self._stream(ino)
            for _ in range(1 + arg % 6):
                line = b"L%06d" % self.n + b"x" * (self.n * 7 % 11)
                self.n += 1
                self.model.wrote(line, stream, self.pos[ino], ino)
                self.pos[ino] += 1
                fs.append(ino, line)
        elif op == "rename" and LIVE in fs.names:
            self.rotations += 1
            fs.rename(LIVE, f"{LIVE}.{self.rotations}")
        elif op == "reopen":
            self._reopen()
        elif op == "copytruncate" and LIVE in fs.names:
            self.rotations += 1
            src = fs.inodes[fs.names[LIVE]]
            fs.copy(LIVE, f"{LIVE}.{self.rotations}")
            self.model.copied(src.lines, fs.names[f"{LIVE}.{self.rotations}"])
            self._new_stream(fs.names[f"{LIVE}.{self.rotations}"])
            fs.truncate(fs.names[LIVE])
            self._new_stream(fs.names[LIVE])
        elif op == "truncate" and LIVE in fs.names:
            fs.truncate(fs.names[LIVE])
            self._new_stream(fs.names[LIVE])
        elif op == "delete" and fs.names:
            names = sorted(fs.names)
            fs.unlink(names[arg % len(names)])
        elif op == "rename_away" and LIVE in fs.names:
            self.rotations += 1
            fs.rename(LIVE, f"old-{self.rotations}.txt")
        elif op == "scan":
            sim.reconcile()
        elif op == "read":
            hs = sim.harvesters()
            if hs:
                hs[arg % len(hs)].read()
        elif op == "ack":
            hs = [h for h in sim.harvesters() if h.inflight]
            if hs:
                hs[arg % len(hs)].ack()
        elif op == "checkpoint":
            sim.persist()
        elif op == "tick":
            self.clock[0] += [0.5, 1.0, 3.0, 40.0][arg % 4]
        elif op == "crash":
            sim.crash(arg % 4)
        elif op == "restart":
            sim.stop()
        elif op == "sync":
            sim.quiesce()

    def finish(self) -> None:
        """Quiet at last: every live line delivered, removed files released, states forgotten."""
        if self.writer is not None and self.writer in self.fs.inodes:
            self.fs.close(self.writer)
            self.writer = None
        for _ in range(5):
            self.sim.quiesce()
            self.clock[0] += CLOSE_REMOVED + 1
        self.sim.quiesce()
        self.sim.reconcile()
        self.model.check(self.sim)


def run_ops(ops: list[tuple[int, int]]) -> World:
    w = World()
    for code, arg in ops:
        w.apply(code, arg)
    w.finish()
    return w


def describe(ops: list[tuple[int, int]]) -> str:
    return ", ".join(f"{OPS[c % len(OPS)]}({a})" for c, a in ops)


def random_ops(rng: random.Random, max_len: int = 40) -> list[tuple[int, int]]:
    return [(rng.randrange(len(OPS)), rng.randrange(256)) for _ in range(rng.randrange(1, max_len))]


def failure(ops: list[tuple[int, int]]) -> str | None:
    try:
        run_ops(ops)
    except ModelViolation as exc:
        return str(exc)
    return None


def shrink(ops: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """A minimal failing sequence: drop ops, then zero arguments, while it still fails."""
    changed = True
    while changed:
        changed = False
        for i in range(len(ops)):
            cand = ops[:i] + ops[i + 1 :]
            if failure(cand):
                ops, changed = cand, True
                break
        else:
            for i, (code, arg) in enumerate(ops):
                if arg:
                    cand = [*ops[:i], (code, 0), *ops[i + 1 :]]
                    if failure(cand):
                        ops, changed = cand, True
                        break
    return ops


def fuzz(sequences: int, seed: int, max_len: int = 40) -> tuple[int, list[tuple[list[tuple[int, int]], str]]]:
    """Run `sequences` random sequences; returns (ops run, [(minimal failing sequence, why)])."""
    rng = random.Random(seed)
    ops_run = 0
    failures: list[tuple[list[tuple[int, int]], str]] = []
    for _ in range(sequences):
        ops = random_ops(rng, max_len)
        ops_run += len(ops)
        if failure(ops):
            small = shrink(ops)
            failures.append((small, failure(small) or ""))
            if len(failures) >= 3:
                break
    return ops_run, failures
