"""The routing tree (Alertmanager's dispatch/route.go, in Python): which routes an alert goes to.

Depth first: an alert descends into the first child route whose matchers match (all of them, if
`continue` is set on the earlier ones); a route none of whose children match takes the alert itself.
Children inherit receiver, group_by and the three timers from their parent.

A route's id (the first part of its groups' keys, so of the notification log's keys and PagerDuty's
dedup keys) says what it is, as Alertmanager's route key does: its parent's id and its matchers
(`0/{service="checkout"}`; identical siblings get `#2`, `#3`). Adding, removing or reordering other
routes, in a reload or before a restart, leaves it and its open groups alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from logtide.sinks.alerts.config import RouteConfig
from logtide.sinks.alerts.model import Matcher, matches_all

DEFAULT_GROUP_WAIT = 30.0
DEFAULT_GROUP_INTERVAL = 300.0
DEFAULT_REPEAT_INTERVAL = 4 * 3600.0


@dataclass(slots=True)
class Route:
    id: str
    receiver: str
    matchers: tuple[Matcher, ...]
    group_by: tuple[str, ...]
    group_all: bool
    group_wait: float
    group_interval: float
    repeat_interval: float
    continue_: bool
    routes: list[Route] = field(default_factory=list)
    # children indexed by one matcher each, so a wide tree is not walked child by child: an equality
    # (name, value), or a regex's literal prefix (name, prefix); the rest are always candidates
    _index: _ChildIndex | None = None

    def group_labels(self, labels: dict[str, str]) -> dict[str, str]:
        if self.group_all:
            return dict(labels)
        return {k: labels[k] for k in self.group_by if k in labels}

    def match(self, labels: dict[str, str]) -> list[Route]:
        """The routes (this one or descendants) that take an alert with these labels."""
        if not matches_all(self.matchers, labels):
            return []
        out: list[Route] = []
        children = self.routes
        if self._index is None:
            order: Any = children
        else:
            order = [children[i] for i in self._index.candidates(labels)]
        for child in order:
            got = child.match(labels)
            out.extend(got)
            if got and not child.continue_:
                break
        return out or [self]

    def index_children(self) -> None:
        """Index the children (only worth it for many); a child is still checked against all its
        matchers, in its place in the order."""
        if len(self.routes) >= 8:
            self._index = _ChildIndex(self.routes)


_REGEX_META = frozenset(".^$*+?{}[]\\|()")


def literal_prefix(regex: str) -> str:
    """A prefix every string the (fully matched) regex accepts starts with; "" when unsure."""
    if "|" in regex:
        return ""
    out: list[str] = []
    for ch in regex:
        if ch in _REGEX_META:
            if ch in "*+?{" and out:
                out.pop()  # the character before a quantifier may be absent or repeated
            break
        out.append(ch)
    return "".join(out)


class _ChildIndex:
    def __init__(self, children: list[Route]) -> None:
        self.by_eq: dict[tuple[str, str], list[int]] = {}
        self.by_prefix: dict[tuple[str, str], list[int]] = {}
        self.always: list[int] = []
        for i, c in enumerate(children):
            eq = next((m for m in c.matchers if m.op == "="), None)
            if eq is not None:
                self.by_eq.setdefault((eq.name, eq.value), []).append(i)
                continue
            rx = next((m for m in c.matchers if m.op == "=~" and literal_prefix(m.value)), None)
            if rx is not None:
                self.by_prefix.setdefault((rx.name, literal_prefix(rx.value)), []).append(i)
            else:
                self.always.append(i)
        self.eq_names = tuple(sorted({n for n, _ in self.by_eq}))
        lengths: dict[str, set[int]] = {}
        for n, p in self.by_prefix:
            lengths.setdefault(n, set()).add(len(p))
        self.prefix_lengths = tuple((n, tuple(sorted(ls))) for n, ls in sorted(lengths.items()))

    def candidates(self, labels: dict[str, str]) -> list[int]:
        pos = list(self.always)
        for n in self.eq_names:
            hit = self.by_eq.get((n, labels.get(n, "")))
            if hit:
                pos.extend(hit)
        for n, lengths in self.prefix_lengths:
            v = labels.get(n, "")
            for k in lengths:
                if k > len(v):
                    break
                hit = self.by_prefix.get((n, v[:k]))
                if hit:
                    pos.extend(hit)
        pos.sort()
        return pos


def build_route(cfg: RouteConfig, parent: Route | None = None, rid: str = "0") -> Route:
    """The tree from the config, settings inherited down."""
    group_by = cfg.group_by if cfg.group_by is not None else (list(parent.group_by) if parent else [])
    group_all = "..." in group_by if cfg.group_by is not None else (parent.group_all if parent else False)
    r = Route(
        id=rid,
        receiver=cfg.receiver or (parent.receiver if parent else ""),
        matchers=tuple(Matcher.parse(m) for m in cfg.matchers),
        group_by=tuple(g for g in group_by if g != "..."),
        group_all=group_all,
        group_wait=_pick(cfg.group_wait, parent.group_wait if parent else DEFAULT_GROUP_WAIT),
        group_interval=_pick(cfg.group_interval, parent.group_interval if parent else DEFAULT_GROUP_INTERVAL),
        repeat_interval=_pick(cfg.repeat_interval, parent.repeat_interval if parent else DEFAULT_REPEAT_INTERVAL),
        continue_=cfg.continue_,
    )
    seen: dict[str, int] = {}
    for c in cfg.routes:
        cid = f"{rid}/{{{','.join(sorted(str(Matcher.parse(m)) for m in c.matchers))}}}"
        seen[cid] = seen.get(cid, 0) + 1
        r.routes.append(build_route(c, r, cid if seen[cid] == 1 else f"{cid}#{seen[cid]}"))
    r.index_children()
    return r


def _pick(v: float | None, inherited: float) -> float:
    return inherited if v is None else v
