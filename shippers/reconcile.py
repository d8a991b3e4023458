"""The shipper's file decisions as pure functions: what a scan found + what we know -> actions.

Rotation (rename-and-create), copytruncate, truncation, content rewritten in place, inode reuse,
start position, ignore-older and forgetting are decided here, without any I/O, so that a simulated
filesystem can drive them through tens of thousands of random sequences
(tests/shippers/test_reconcile_model.py). `Shipper` stats, reads heads and applies the actions;
`Harvester` asks `at_end_of_data` what to do when a read returns nothing.

One reconcile pass (`plan`): running harvesters follow renames or become orphans; known files that
changed are checked against their stored head (truncated/rewritten -> from 0); new files are either
copies of a file we had read (copytruncate: resume at its offset), or start at 0 / at the end
(`start_position: end` on the first scan only); states of files gone everywhere are forgotten.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from hashlib import blake2b

from logtide.shippers.checkpoint_store import FileState
from logtide.shippers.line_reader import looks_binary

TRUNCATION_MEMORY_S = 600.0


def head_hash(head: bytes) -> str:
    return blake2b(head, digest_size=12).hexdigest()


def file_key(dev: int, ino: int) -> str:
    """Registry key of a file: stable across renames."""
    return f"{dev}:{ino}"


def same_file(stored_head_len: int, stored_head_hash: str, current_head: bytes) -> bool:
    """Does a file whose first bytes are `current_head` continue the stored one?

    The file must still hold at least the stored head, byte for byte.
    """
    if len(current_head) < stored_head_len:
        return False
    return head_hash(current_head[:stored_head_len]) == stored_head_hash


def new_fp_id(dev: int, ino: int, now: float, previous: str | None = None) -> str:
    """The file part of event ids, fixed when a file (or its content after a truncation) is first seen.

    It is persisted in the registry, so lines re-shipped after a crash keep their ids. It includes
    the time of first sight: a reused inode or a truncated file rewritten with the same first bytes
    must not produce ids that collide with the old content's (a sink would drop them as duplicates).
    """
    fp = f"{dev}:{ino}:{int(now * 1e9)}"
    return fp + "+" if fp == previous else fp


# -- inputs ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Seen:
    """One regular file a scan found (the first input whose patterns match it)."""

    path: str
    input_index: int
    dev: int
    ino: int
    size: int
    mtime: float

    @property
    def key(self) -> str:
        return file_key(self.dev, self.ino)


@dataclass(frozen=True, slots=True)
class Running:
    """What reconcile needs of a running harvester."""

    path: str
    read_offset: int
    done: bool
    orphaned: bool


@dataclass(frozen=True, slots=True)
class InputRules:
    name: str
    start_position: str = "beginning"
    ignore_older_s: float | None = None


@dataclass(frozen=True, slots=True)
class Rules:
    fingerprint_bytes: int
    inputs: tuple[InputRules, ...]
    once: bool = False
    truncation_memory_s: float = TRUNCATION_MEMORY_S


# Truncation memory: head hash of content we had read before it was truncated -> (offset, when).
Truncations = dict[str, tuple[int, float]]


# -- actions --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Release:
    """The harvester finished: drop it (the state stays; a later change starts a new one)."""

    key: str


@dataclass(frozen=True, slots=True)
class Orphan:
    """The file is gone from every pattern (deleted or renamed away): read to its end, then close."""

    key: str


@dataclass(frozen=True, slots=True)
class Follow:
    """The file was renamed (still matched): the harvester carries on under the new path."""

    key: str
    path: str


@dataclass(frozen=True, slots=True)
class Wake:
    """The file's size differs from what the harvester read: have it look."""

    key: str


@dataclass(frozen=True, slots=True)
class Skip:
    """Not shipped (binary, ignore_older); reported once per path and reason."""

    path: str
    input_index: int
    reason: str


@dataclass(frozen=True, slots=True)
class Store:
    """Replace (or add) the registry state; `reason` says why, for logs and metrics:
    "new", "copy" (copytruncate: resumed at the copied file's offset), "replaced" (truncated,
    rewritten or inode reused: from 0), "checked" (unchanged, not looked at again), "moved"."""

    state: FileState
    reason: str
    old_offset: int = 0


@dataclass(frozen=True, slots=True)
class Start:
    """Start a harvester on the stored state of `key` (after the `Store`s of this plan)."""

    key: str
    input_index: int


@dataclass(frozen=True, slots=True)
class Forget:
    """The file is gone and no harvester holds it: drop its state."""

    key: str


@dataclass(frozen=True, slots=True)
class Persist:
    """Write the registry now (new fingerprints: a crash before the first ack keeps their ids)."""


Action = Release | Orphan | Follow | Wake | Skip | Store | Start | Forget | Persist


@dataclass(slots=True)
class Plan:
    actions: list[Action] = field(default_factory=list)
    truncations: Truncations = field(default_factory=dict)


# -- the decisions --------------------------------------------------------------------------------


def first_per_file(seen: list[Seen]) -> dict[str, Seen]:
    """One entry per inode (a file matched under two paths, e.g. a hard link, is read once)."""
    by_key: dict[str, Seen] = {}
    for f in seen:
        by_key.setdefault(f.key, f)
    return by_key


def _unchanged(f: Seen, state: FileState) -> bool:
    return state.path == f.path and f.size == state.offset and f.mtime <= state.updated


def heads_needed(
    seen: list[Seen], states: Mapping[str, FileState], running: Mapping[str, Running]
) -> list[str]:
    """Paths whose first bytes `plan` needs: files without a live harvester that are new or changed."""
    out = []
    for key, f in first_per_file(seen).items():
        r = running.get(key)
        if r is not None and not r.done:
            continue
        state = states.get(key)
        if state is not None and _unchanged(f, state):
            continue
        out.append(f.path)
    return out


def plan(
    seen: list[Seen],
    heads: Mapping[str, bytes | None],
    states: Mapping[str, FileState],
    running: Mapping[str, Running],
    *,
    truncations: Truncations,
    rules: Rules,
    initial: bool | frozenset[int],
    now: float,
) -> Plan:
    """The actions that bring harvesters and registry in line with what a scan found.

    `heads[path]` holds the first `fingerprint_bytes` of each path `heads_needed` asked for (None:
    could not be read this time; the file is looked at again on the next pass). `states` and
    `running` are not modified. `now` is wall-clock seconds. `initial`: the first scan (of every
    input, or of the inputs whose indexes are given: added by a reload), where `start_position`
    applies.
    """
    by_key = first_per_file(seen)
    out = Plan(truncations={h: v for h, v in truncations.items() if now - v[1] < rules.truncation_memory_s})
    acts = out.actions
    live: set[str] = set()

    # 1. running harvesters: follow renames, notice files gone from every pattern
    for key, r in running.items():
        if r.done:
            acts.append(Release(key))
            continue
        live.add(key)
        f = by_key.get(key)
        if f is None:
            acts.append(Orphan(key) if not r.orphaned else Wake(key))
            continue
        if f.path != r.path:
            acts.append(Follow(key, f.path))
        if f.size != r.read_offset:
            acts.append(Wake(key))

    ordered = sorted(by_key.values(), key=lambda x: x.path)
    current: dict[str, FileState] = dict(states)  # states as this plan leaves them
    persist = False

    # 2. known files without a harvester: unchanged, grown, or not the content we read
    for f in ordered:
        key = f.key
        state = states.get(key)
        if key in live or state is None or _unchanged(f, state):
            continue
        head = heads.get(f.path)
        if head is None:
            continue
        if f.size < state.offset or not same_file(state.head_len, state.head_hash, head):
            # Truncated, rewritten, or the inode reused by a new file: in every case the bytes there
            # are not the ones we read, so all of them are new (whatever start_position).
            if state.head_len >= rules.fingerprint_bytes:
                out.truncations[state.head_hash] = (state.offset, now)
            new = replace(
                state, path=f.path, offset=0, head_len=len(head), head_hash=head_hash(head),
                fp_id=new_fp_id(f.dev, f.ino, now, state.fp_id), updated=now,
            )  # fmt: skip
            acts.append(Store(new, "replaced", state.offset))
            current[key] = new
            persist = True
        elif f.size == state.offset:
            new = replace(state, path=f.path, updated=now)  # checked: unchanged, no need to look again
            acts.append(Store(new, "checked"))
            current[key] = new
            continue
        elif state.path != f.path:
            new = replace(state, path=f.path)
            acts.append(Store(new, "moved"))
            current[key] = new
        acts.append(Start(key, f.input_index))

    # 3. new files: a copy of one we had read (copytruncate), or start at 0 / at the end
    for f in ordered:
        key = f.key
        if key in live or key in states:
            continue
        head = heads.get(f.path)
        if head is None:
            continue
        inp = rules.inputs[f.input_index]
        if looks_binary(head):
            acts.append(Skip(f.path, f.input_index, "binary"))
            continue
        if inp.ignore_older_s is not None and now - f.mtime > inp.ignore_older_s:
            acts.append(Skip(f.path, f.input_index, "ignore_older"))
            continue
        offset = copy_offset(
            head, key, f.size, out.truncations, current, by_key, heads, rules.fingerprint_bytes
        )
        reason = "copy"
        if offset is None:
            reason = "new"
            first = initial if isinstance(initial, bool) else f.input_index in initial
            offset = f.size if (first and inp.start_position == "end") else 0
        state = FileState(
            key=key, path=f.path, dev=f.dev, ino=f.ino, head_len=len(head), head_hash=head_hash(head),
            fp_id=new_fp_id(f.dev, f.ino, now), offset=offset, input=inp.name, updated=now,
        )  # fmt: skip
        acts.append(Store(state, reason))
        current[key] = state
        persist = True
        if offset == f.size and rules.once:
            continue
        acts.append(Start(key, f.input_index))

    # 4. forget files that are gone (and whose harvester has finished)
    for key in states:
        if key not in by_key and key not in live:
            acts.append(Forget(key))
            persist = True
    if persist:
        acts.append(Persist())
    return out


def copy_offset(  # noqa: PLR0917
    head: bytes,
    key: str,
    size: int,
    truncations: Truncations,
    states: Mapping[str, FileState],
    by_key: Mapping[str, Seen],
    heads: Mapping[str, bytes | None],
    fingerprint_bytes: int,
) -> int | None:
    """copytruncate: a new file whose first bytes are those of a file we had read, since truncated.

    The known file is "intact" (and the new one then a different file that happens to start the
    same, read from 0) when its inode is still found with at least its offset and its first bytes.
    """
    if len(head) < fingerprint_bytes:
        return None
    hh = head_hash(head)
    hit = truncations.get(hh)
    if hit is not None:
        return min(hit[0], size)
    for other in states.values():
        if other.key == key or other.head_hash != hh or other.head_len != len(head):
            continue
        f = by_key.get(other.key)
        intact = f is not None and f.size >= other.offset
        if intact and f is not None:
            other_head = heads.get(f.path)
            if other_head is not None and not same_file(other.head_len, other.head_hash, other_head):
                intact = False
        if not intact:
            return min(other.offset, size)
    return None


# -- the harvester after each read ------------------------------------------------------------------


def check_chunk(
    read_offset: int, data: bytes, head: bytes, stored_head_len: int, stored_head_hash: str
) -> tuple[bool, int]:
    """Is `data` (read at `read_offset`, then `head` read from offset 0) the content we were reading?

    Returns (ok, head length to store now, 0 if unchanged). The file must still start with the
    stored head, and where the chunk overlaps the head the two reads must agree. While a file is
    younger than its fingerprint the stored head grows with what was read, so a file truncated and
    rewritten before we looked again is caught before a line of it goes out under the old identity
    (the caller persists the longer head before sending: a crash cannot hide the rewrite either).
    """
    if not same_file(stored_head_len, stored_head_hash, head):
        return False, 0
    if read_offset < len(head):
        n = min(len(head), read_offset + len(data))
        if head[read_offset:n] != data[: n - read_offset]:
            return False, 0
        if n > stored_head_len:
            return True, n
    return True, 0


# -- the harvester at the end of what is there -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class AtEnd:
    """What a harvester does when a read returned nothing.

    kind: "truncated" (read from 0 again: the content is not what we read), "finish" (done with
    the file for good: --once, or removed and quiet; flush a last line without newline),
    "close" (inactive: release the file, a later change reopens it), "flush_multiline" (the
    multiline event waited long enough), "wait" (sleep up to `timeout` or until woken).
    `grow_head`: the file now holds more of its fingerprint than stored (store the longer head).
    """

    kind: str
    timeout: float = 0.0
    grow_head: bool = False
    orphaned: bool = False


def at_end_of_data(
    *,
    read_offset: int,
    size: int,
    nlink: int,
    head: bytes,
    stored_head_len: int,
    stored_head_hash: str,
    orphaned: bool,
    once: bool,
    idle: float,
    close_inactive_s: float,
    close_removed_after_s: float,
    multiline_pending: bool,
    multiline_flush_s: float,
) -> AtEnd:
    """The harvester's end-of-data decision (pure: `head` and `size` come from fstat/pread)."""
    if size < read_offset:
        return AtEnd("truncated")
    if not same_file(stored_head_len, stored_head_hash, head):
        # truncated and rewritten past our offset before we looked (copytruncate + busy writer):
        # the size alone cannot tell, the first bytes can
        return AtEnd("truncated")
    grow = stored_head_len < len(head)
    orphaned = orphaned or nlink == 0
    if once or (orphaned and idle >= close_removed_after_s):
        return AtEnd("finish", grow_head=grow, orphaned=orphaned)
    if idle >= close_inactive_s:
        return AtEnd("close", grow_head=grow, orphaned=orphaned)
    timeout = close_inactive_s - idle
    if orphaned:
        timeout = min(timeout, max(0.05, close_removed_after_s - idle))
    if multiline_pending:
        remaining = multiline_flush_s - idle
        if remaining <= 0:
            return AtEnd("flush_multiline", grow_head=grow, orphaned=orphaned)
        timeout = min(timeout, remaining)
    return AtEnd("wait", timeout=timeout, grow_head=grow, orphaned=orphaned)
