"""Prometheus `metric_relabel_configs` rules and target-label merging (`honor_labels`), as pure functions.

A label set is a dict that holds the metric name under `__name__`, as in Prometheus, so one rule
language selects by name and by label. Semantics follow Prometheus: `regex` is fully anchored,
`source_labels` values are joined with `separator`, a missing label reads as "", and a label set
to "" is removed.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Action = Literal["replace", "keep", "drop", "labelmap", "labeldrop", "labelkeep"]
NAME = "__name__"


class RelabelRule(BaseModel):
    """One `metric_relabel_configs` entry (Prometheus field names and defaults)."""

    model_config = ConfigDict(extra="forbid")

    source_labels: list[str] = Field(default_factory=list)
    separator: str = ";"
    regex: str = "(.*)"
    target_label: str | None = None
    replacement: str = "$1"
    action: Action = "replace"

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from None
        return value

    def model_post_init(self, _ctx: object) -> None:
        if self.action == "replace" and not self.target_label:
            raise ValueError("action replace needs target_label")
        if self.action in ("keep", "drop") and not self.source_labels:
            raise ValueError(f"action {self.action} needs source_labels")
        self._re = re.compile(f"^(?:{self.regex})$")


_GROUP = re.compile(r"\$\{(\w+)\}|\$(\d+)")


def _expand(template: str, m: re.Match[str]) -> str:
    def sub(g: re.Match[str]) -> str:
        ref = g.group(1) or g.group(2)
        try:
            val = m.group(int(ref)) if ref.isdigit() else m.group(ref)
        except IndexError:
            return ""
        return val or ""

    return _GROUP.sub(sub, template)



def relabel(labels: dict[str, str], rules: list[RelabelRule]) -> dict[str, str] | None:
    """The label set after the rules, or None when a rule drops the sample. The input is not changed."""
    out = dict(labels)
    for r in rules:
        rx = r._re
        if r.action in ("keep", "drop", "replace"):
            value = r.separator.join(out.get(s, "") for s in r.source_labels)
            m = rx.match(value)
            if r.action == "keep" and m is None:
                return None
            if r.action == "drop" and m is not None:
                return None
            if r.action == "replace" and m is not None and r.target_label:
                target = _expand(r.target_label, m)
                new = _expand(r.replacement, m)
                if new:
                    out[target] = new
                else:
                    out.pop(target, None)
        elif r.action == "labeldrop":
            out = {k: v for k, v in out.items() if k == NAME or not rx.match(k)}
        elif r.action == "labelkeep":
            out = {k: v for k, v in out.items() if k == NAME or rx.match(k)}
        elif r.action == "labelmap":
            for k, v in list(out.items()):
                m = rx.match(k)
                if m is not None:
                    out[_expand(r.replacement, m)] = v
    return {k: v for k, v in out.items() if v != ""}


def merge_target_labels(scraped: dict[str, str], target: dict[str, str], honor_labels: bool) -> dict[str, str]:
    """Target labels (job, instance, configured ones) joined to a scraped sample's labels.

    With `honor_labels` false (the default, as in Prometheus) the target wins and a conflicting scraped
    label is kept as `exported_<name>`; with it true the scraped value wins. Never silent overriding.
    """
    out = dict(scraped)
    for k, v in target.items():
        if k in out and out[k] != v:
            if honor_labels:
                continue
            out["exported_" + k] = out[k]
        out[k] = v
    return out
