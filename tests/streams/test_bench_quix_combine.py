"""The Quix runner of bench/bench_streams.py combines points exactly as the worker's `BatchMapper` does.

Why: the benchmark compares the worker with Quix Streams doing the same job, map-side combining
included; if the Quix side combined differently (more messages, other panes, other sketches) the
comparison would not be of the same job. Same records, one batch: `BatchMapper.logs` against
`map_record` per record then `PartitionCombiner` (what the Quix sink does between two checkpoints).
Compared: the enriched bytes and every `SeriesBatch` message, byte for byte, with records the
plain-dict lane declines (the reference lane) and dead letters mixed in.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from logtide.streams.batch import BatchMapper
from logtide.streams.windowing import WindowSpec

from tests.streams.test_batch_equivalence import NOW, Rec, cfg, events, record

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from quix_job import PartitionCombiner, map_record


def _declining(fast, every: int) -> None:
    """Make the plain-dict lane decline every `every`-th record (the reference lane takes it)."""
    decide = fast._decide

    def decide_or_decline(d, now, partition):
        if int(d["event"]["id"][1:]) % every == 0:
            raise RuntimeError("declined")
        return decide(d, now, partition)

    fast._decide = decide_or_decline


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(evs=events, hosts=st.integers(1, 3), every=st.integers(2, 7))
def test_quix_runner_combines_as_the_batch_mapper(evs, hosts, every) -> None:
    c = cfg(5.0)
    recs = [Rec(None, record(i, t, svc, err, bad, hosts), 500 + i) for i, (t, svc, err, bad) in enumerate(evs)]
    mapper = BatchMapper(c)
    _declining(mapper.fast, every)
    want = mapper.logs(recs, "raw", 2, NOW)

    other = BatchMapper(c)  # its operators, fresh (source clocks of their own), used record by record
    _declining(other.fast, every)
    w = c.window
    comb = PartitionCombiner(WindowSpec(w.size_ms, w.step_ms, w.lateness_ms, w.relative_accuracy))
    enriched = []
    for r in recs:
        m = map_record(other.fast, other.stateless, r.value, NOW, 2)
        if m is not None:
            enriched.append(m[0])
        comb.add(r.offset, m)
    got = comb.drain("raw:2")

    assert enriched == [v for _k, v in want.enriched]
    assert [s.to_bytes() for s in got] == [s.to_bytes() for s in want.series]
    assert comb.drain("raw:2") == []  # emptied: the next checkpoint starts afresh
