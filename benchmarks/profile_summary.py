"""Summarise a ``py-spy record --format raw`` profile of a cdcflow run by area and function.

Each line of the raw (collapsed) format is ``frame;frame;...;leaf count`` with frames like
``function (path/to/file.py:line)``. Every sample is given to one area by its stack: imports when
any frame is inside ``importlib._bootstrap``; else the innermost frame that belongs to a cdcflow
area (decode, redaction, PostgreSQL writer, Kafka source); else Beam when a frame is inside
``apache_beam``; else other. It prints the share of each area, the functions with the most own
(leaf) samples and the cdcflow functions with the most inclusive samples.

Run: ``.venv/bin/python benchmarks/profile_summary.py PROFILE.raw [--top 25]``.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

#: (area, substrings of a frame's file path), checked innermost frame first.
AREAS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("redaction", ("cdcflow/transforms/redact/",)),
    ("decode", ("cdcflow/schemas/", "cdcflow/transforms/decode")),
    ("PostgreSQL writer", ("cdcflow/io/postgres/", "cdcflow/io/sink_common")),
    ("Kafka source", ("cdcflow/io/kafka", "cdcflow/beam/kafka")),
)
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def area_of(frames: list[str]) -> str:
    """The area a sample's stack (outermost first) is charged to."""
    if any("importlib._bootstrap" in f or "<frozen importlib" in f for f in frames):
        return "imports"
    for frame in reversed(frames):
        for area, needles in AREAS:
            if any(n in frame for n in needles):
                return area
    if any("apache_beam" in f for f in frames):
        return "Beam (runner, coders, bundles)"
    return "other (interpreter, threads, clients)"


def short(frame: str) -> str:
    """``function (file.py:line)`` with the path cut after ``site-packages/`` or the repo."""
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["file"]
    for cut in ("site-packages/", "/bench/", "/work/main/"):
        if cut in path:
            path = path.split(cut, 1)[1]
    return f"{match['func']} ({path})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()

    areas: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in args.profile.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f and not f.startswith("process ")]
        if not frames:
            continue
        total += count
        areas[area_of(frames)] += count
        leaves[short(frames[-1])] += count
        for name in {short(f) for f in frames if "cdcflow/" in f}:
            inclusive[name] += count
    if not total:
        raise SystemExit(f"no samples in {args.profile}")
    print(f"{total} samples")
    print("\nby area (a sample counted once):")
    for area, count in areas.most_common():
        print(f"  {count / total:6.1%}  {area}")
    print(f"\ntop {args.top} functions by own samples:")
    for name, count in leaves.most_common(args.top):
        print(f"  {count / total:6.1%}  {name}")
    print(f"\ntop {args.top} cdcflow functions by inclusive samples:")
    for name, count in inclusive.most_common(args.top):
        print(f"  {count / total:6.1%}  {name}")


if __name__ == "__main__":
    main()
