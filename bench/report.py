"""Results of the benchmark: rows with medians, ratios and targets; the final table and JSON.

A :class:`Row` holds the samples of zeroimage and of its peer for one comparison; the median of
each, their ratio (zeroimage / peer) and a :class:`Target` give the verdict: PASS when the checked
quantity is at most the target, MISS otherwise, and "aim met" when it is also at most the aim.
A count that must be zero in every run (blob uploads, downloads, layers compressed) is checked
on its largest sample, not its median, so that one bad run is not hidden. Samples taken in the
same round are paired: the range of the per-round ratios shows how much a ratio moved.
"""

from __future__ import annotations

import json
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal


@dataclass(frozen=True)
class Target:
    """``quantity`` (the ratio, zeroimage's own median, or — ``worst`` — zeroimage's largest
    sample) must be at most ``limit``."""

    limit: float
    aim: float | None = None
    quantity: Literal["ratio", "zeroimage", "worst"] = "ratio"

    def describe(self, unit: str) -> str:
        suffix = "" if self.quantity == "ratio" else f" {unit}"
        text = f"{'max ' if self.quantity == 'worst' else ''}<= {self.limit:g}{suffix}"
        return text if self.aim is None else f"{text} (aim {self.aim:g})"


def median(samples: list[float]) -> float | None:
    return statistics.median(samples) if samples else None


@dataclass
class Row:
    """One comparison: zeroimage against ``peer`` (medians of the samples)."""

    scenario: str
    label: str
    peer: str
    unit: str  # "s" or "MiB"
    target: Target | None = None
    zeroimage_samples: list[float] = field(default_factory=list)
    peer_samples: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def zeroimage(self) -> float | None:
        return median(self.zeroimage_samples)

    @property
    def peer_median(self) -> float | None:
        return median(self.peer_samples)

    @property
    def ratio(self) -> float | None:
        z, p = self.zeroimage, self.peer_median
        return None if z is None or not p else z / p

    @property
    def ratio_range(self) -> tuple[float, float] | None:
        """The smallest and largest ratio of samples taken in the same round."""
        ratios = [z / p for z, p in zip(self.zeroimage_samples, self.peer_samples, strict=False) if p]
        return (min(ratios), max(ratios)) if ratios else None

    @property
    def checked(self) -> float | None:
        if self.target is None:
            return None
        if self.target.quantity == "worst":
            return max(self.zeroimage_samples) if self.zeroimage_samples else None
        return self.ratio if self.target.quantity == "ratio" else self.zeroimage

    @property
    def verdict(self) -> str:
        value = self.checked
        if self.target is None:
            return ""
        if value is None:
            return "n/a"
        if value > self.target.limit:
            return "MISS"
        return "PASS (aim met)" if self.target.aim is not None and value <= self.target.aim else "PASS"

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "label": self.label,
            "peer": self.peer,
            "unit": self.unit,
            "zeroimage_median": self.zeroimage,
            "peer_median": self.peer_median,
            "ratio": self.ratio,
            "ratio_range": self.ratio_range,
            "target": None
            if self.target is None
            else {"limit": self.target.limit, "aim": self.target.aim, "quantity": self.target.quantity},
            "verdict": self.verdict,
            "zeroimage_samples": self.zeroimage_samples,
            "peer_samples": self.peer_samples,
            "note": self.note,
        }


@dataclass
class Report:
    """Everything measured, plus notes (skipped peers, failures) and context lines."""

    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def note(self, text: str) -> None:
        self.notes.append(text)
        log(f"note: {text}")

    def table(self) -> str:
        header = ("#", "comparison", "peer", "zeroimage", "peer", "ratio", "per round", "target", "verdict")
        lines = [header]
        for row in self.rows:
            lines.append(
                (
                    row.scenario,
                    row.label,
                    row.peer,
                    _fmt(row.zeroimage, row.unit),
                    _fmt(row.peer_median, row.unit),
                    "-" if row.ratio is None else f"{row.ratio:.2f}",
                    _fmt_range(row.ratio_range),
                    "" if row.target is None else row.target.describe(row.unit),
                    row.verdict,
                )
            )
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        out = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines]
        out.insert(1, "  ".join("-" * w for w in widths))
        extra = [f"  {row.scenario} {row.label}: {row.note}" for row in self.rows if row.note]
        if extra:
            out += ["", "row notes:", *extra]
        if self.notes:
            out += ["", "notes:", *(f"  - {n}" for n in self.notes)]
        return "\n".join(out)

    def write_json(self, path: Path, settings: dict[str, Any]) -> None:
        document = {
            "settings": settings,
            "rows": [row.to_json() for row in self.rows],
            "context": self.context,
            "notes": self.notes,
        }
        path.write_text(json.dumps(document, indent=2) + "\n")


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        return f"{value:.3f} s" if value < 1 else f"{value:.2f} s"
    if unit == "MiB":
        return f"{value:.1f} {unit}"
    return f"{value:g} {unit}"  # a count: its median may be a half


def _fmt_range(span: tuple[float, float] | None) -> str:
    return "-" if span is None else f"{span[0]:.2f}-{span[1]:.2f}"


def log(text: str) -> None:
    """Progress goes to stderr; the final table to stdout."""
    print(f"bench: {text}", file=sys.stderr, flush=True)
