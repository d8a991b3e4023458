"""The shipper's file decisions against a simulated filesystem, at volume (no I/O: seconds).

`tests/shippers/fs_model.py` holds the filesystem, the interpreter and the properties. The
real-filesystem model test (test_model.py) stays as the check that the simulation matches reality;
`bench/bench_shipper_model.py` runs far more sequences.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.shippers import fs_model
from tests.shippers.fs_model import OPS, describe, fuzz, run_ops

SEQUENCES = int(os.environ.get("SHIP_SIM_SEQUENCES", "20000"))
OP = st.tuples(st.integers(0, len(OPS) - 1), st.integers(0, 255))


def ops(*names: str) -> list[tuple[int, int]]:
    return [(OPS.index(n.split(":")[0]), int(n.split(":")[1]) if ":" in n else 0) for n in names]


def test_random_sequences_keep_every_property() -> None:
    """Tens of thousands of seeded random sequences; a failure is reported shrunk to a minimum."""
    ops_run, failures = fuzz(SEQUENCES, seed=20261201)
    assert not failures, "\n".join(f"{describe(o)}\n  -> {why}" for o, why in failures)
    assert ops_run > SEQUENCES * 10  # the sequences were not trivially short


@settings(max_examples=int(os.environ.get("SHIP_SIM_EXAMPLES", "1500")), deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(seq=st.lists(OP, max_size=40))
def test_hypothesis_sequences_keep_every_property(seq: list[tuple[int, int]]) -> None:
    run_ops(seq)


# Minimal sequences the model found, kept as regressions (each failed before the fix named).
FOUND = {
    # a chunk read after the file was truncated and rewritten: it was sent under the old identity
    # (a partial line, then the same lines again with new ids) -> the head is checked after each read
    "rewritten under the reader": ops("write", "scan", "copytruncate", "write"),
    "partial line after rewrite": ops("reopen", "sync", "write", "read", "copytruncate", "write"),
    # a file fingerprinted empty, rewritten while the shipper was down: same identity, same ids for
    # other lines -> the head grows (and is persisted) with what is read
    "empty head and a crash": ops("reopen", "scan", "write", "sync", "copytruncate", "write", "crash"),
    "truncated twice": ops("write", "truncate", "sync", "write", "read", "truncate", "write:158"),
    # an orphan whose truncation reset its offset to where it already was never finished
    "truncated then deleted": ops("write", "scan", "truncate", "write", "delete"),
}


def test_sequences_found_by_the_model_stay_fixed() -> None:
    for name, seq in FOUND.items():
        w = run_ops(seq)
        assert w.model.written, name


def test_a_crash_resends_from_the_persisted_offset_with_the_same_ids() -> None:
    w = fs_model.World()
    # 5 lines read and sent; the first send acknowledged and checkpointed; more acknowledged after
    # the checkpoint; then kill -9 with nothing of the rest delivered
    for code, arg in ops("write:5", "scan", "read", "ack", "checkpoint", "read", "ack", "read", "crash:0"):
        w.apply(code, arg)
    w.finish()  # raises if a line was lost or re-sent under another id
    assert len(w.model.first) == len(w.model.written) == 6
    assert w.model.n_delivered > len(w.model.written)  # what was acknowledged after the checkpoint came again


def _caught(limit: int = 5000) -> bool:
    import random

    rng = random.Random(1)
    return any(fs_model.failure(fs_model.random_ops(rng)) for _ in range(limit))


def test_the_model_catches_known_bugs(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Not vacuous: each of these faults in the decisions is found within a few thousand sequences."""
    from logtide.shippers import reconcile

    real_plan, real_copy, real_check = fs_model.plan, reconcile.copy_offset, fs_model.check_chunk

    def no_persist(*a, **k):  # type: ignore[no-untyped-def]
        p = real_plan(*a, **k)
        p.actions = [x for x in p.actions if not isinstance(x, reconcile.Persist)]
        return p

    faults = {
        "new fingerprints not persisted before sending": ("plan", no_persist),
        "copytruncate resumed 3 bytes late": (
            "copy",
            lambda *a: None if (r := real_copy(*a)) is None else r + 3,
        ),
        "head not grown with what is read": (
            "check",
            lambda ro, d, h, n, hh: (reconcile.same_file(n, hh, h), 0),
        ),
    }
    for name, (where, fault) in faults.items():
        with monkeypatch.context() as m:
            if where == "plan":
                m.setattr(fs_model, "plan", fault)
            elif where == "copy":
                m.setattr(reconcile, "copy_offset", fault)
            else:
                m.setattr(fs_model, "check_chunk", fault)
            assert _caught(), f"the model did not notice: {name}"
    assert (fs_model.plan, reconcile.copy_offset, fs_model.check_chunk) == (real_plan, real_copy, real_check)
