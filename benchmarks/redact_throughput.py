"""Redaction throughput on batches of decoded events (one core, no engine).

Generates ``customers`` change events in memory (10 columns: id, email, phone, full_name,
credit_limit as Decimal, birth_date, created_at, city, status, notes; 70% inserts with an
``after`` image, 25% updates with ``before`` and ``after``, 5% deletes with ``before``; every
event has a key) and runs :class:`cdcflow.transforms.redact.RedactStep` over batches of
``--batch`` events. Scenarios:

* ``columns``: three column rules (email mask keeping the domain, phone tokenize, credit_limit
  drop) -- the target is 200k events/s;
* ``columns+allow``: the same plus a fail-closed allow-list of 7 columns and a key-safe rule
  on the key column;
* ``scan``: content detectors (all nine) over the text columns of a free-text table
  (no column rules), each row carrying an e-mail and a phone number in ``notes``;
* ``hash``: the issue-12 hot path's rule, ``hash-sha256`` on ``email`` (an update's
  ``before`` and ``after`` carry the same address);
* ``untouched``: a rule on a column these rows do not have (every event passes unchanged:
  the cost of a redact step on a table none of whose columns it redacts).

Then ``--adversarial`` (on by default) times all nine detectors over texts of about 100k
characters built to make regular expressions backtrack or candidates restart (moved here from
the unit tests: the goal is linear time, each text well under 5 CPU-seconds).

Prints events/s, CPU seconds and peak RSS per scenario. Run:
``.venv/bin/python benchmarks/redact_throughput.py [--events 200000] [--batch 10000]``.
Not part of the test suite; the numbers go in docs/redaction.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import random
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import Stopwatch, peak_rss_mb

from cdcflow.schemas.model import ChangeEvent, EventBatch, Op, Position, TableId
from cdcflow.transforms.redact import RedactConfig, RedactStep

KEY = "benchmark-key-0123456789abcdef"
SALT = "benchmark-salt-0123456789abcdef"
TABLE = TableId("shop", "public", "customers")
CITIES = ["Berlin", "London", "Paris", "Lisbon", "Oslo", "Rome", "Madrid", "Vienna"]
FIRST = ["ada", "grace", "linus", "alan", "barbara", "edsger", "donald", "margaret"]
LAST = ["lovelace", "hopper", "torvalds", "turing", "liskov", "dijkstra", "knuth", "hamilton"]

SCENARIOS: dict[str, dict[str, Any]] = {
    "columns": {
        "rules": [
            {"table": "shop.public.customers", "columns": ["email"], "strategy": "mask",
             "keep_first": 1, "keep_domain": True},
            {"table": "shop.public.customers", "columns": ["phone"], "strategy": "tokenize"},
            {"table": "shop.public.customers", "columns": ["credit_limit"], "strategy": "drop"},
        ]
    },
    "columns+allow": {
        "tables": [
            {"table": "shop.public.customers", "key_columns": ["id"],
             "allow": ["id", "email", "phone", "full_name", "city", "status", "created_at"]},
        ],
        "rules": [
            {"table": "shop.public.customers", "columns": ["email"], "strategy": "mask",
             "keep_first": 1, "keep_domain": True},
            {"table": "shop.public.customers", "columns": ["phone"], "strategy": "tokenize"},
            {"table": "shop.public.customers", "columns": ["id"], "strategy": "hmac-sha256"},
        ],
    },
    "scan": {
        "tables": [{"table": "shop.public.customers", "scan": True}],
    },
    "hash": {
        "rules": [
            {"table": "shop.public.customers", "columns": ["email"], "strategy": "hash-sha256"},
        ]
    },
    "untouched": {
        "rules": [
            {"table": "shop.public.customers", "columns": ["ssn"], "strategy": "hash-sha256"},
        ]
    },
}  # fmt: skip


def _row(rng: random.Random, ident: int) -> dict[str, Any]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    return {
        "id": ident,
        "email": f"{first}.{last}{ident}@example.com",
        "phone": f"+44 20 {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}",
        "full_name": f"{first.title()} {last.title()}",
        "credit_limit": Decimal(rng.randint(0, 500_000)) / 100,
        "birth_date": dt.date(1950, 1, 1) + dt.timedelta(days=rng.randint(0, 20_000)),
        "created_at": dt.datetime(2024, 1, 1) + dt.timedelta(seconds=rng.randint(0, 10**7)),
        "city": rng.choice(CITIES),
        "status": rng.choice(["active", "dormant", "closed"]),
        "notes": f"prefers mail to {first}@example.org, call {rng.randint(200, 999)}-555-0143",
    }


def make_events(count: int, seed: int = 7) -> list[ChangeEvent]:
    """``count`` customer events: 70% inserts, 25% updates, 5% deletes."""
    rng = random.Random(seed)
    events = []
    for offset in range(count):
        ident = rng.randint(1, count // 4 + 1)
        roll = rng.random()
        position = Position("shop.public.customers", 0, offset)
        key = {"id": ident}
        if roll < 0.70:
            events.append(ChangeEvent(op=Op.CREATE, table=TABLE, position=position, key=key,
                                      after=_row(rng, ident)))
        elif roll < 0.95:
            before = _row(rng, ident)
            after = {**before, "status": "closed"}
            events.append(ChangeEvent(op=Op.UPDATE, table=TABLE, position=position, key=key,
                                      before=before, after=after))
        else:
            events.append(ChangeEvent(op=Op.DELETE, table=TABLE, position=position, key=key,
                                      before=_row(rng, ident)))
    return events


def run(name: str, events: list[ChangeEvent], batch_size: int) -> tuple[float, float]:
    config = RedactConfig.model_validate(
        {"type": "redact", "key": KEY, "salt": SALT, **SCENARIOS[name]}
    )
    step = RedactStep(config)
    step.setup()
    batches = [
        EventBatch(stream="shop.public.customers", partition=0, last_offset=i + batch_size - 1,
                   events=events[i : i + batch_size])
        for i in range(0, len(events), batch_size)
    ]
    step.process(batches[0])  # warm the plan caches
    out = 0
    dead = 0
    with Stopwatch(collect=True) as watch:
        for batch in batches:
            result = step.process(batch)
            out += len(result.batch.events)
            dead += len(result.dead_letters)
    assert out + dead == len(events), (out, dead)
    assert dead == 0, f"{dead} dead letters"
    return len(events) / watch.wall, watch.cpu


#: Texts of about 100k characters that would take quadratic time with a careless pattern.
ADVERSARIAL: dict[str, str] = {
    "digit groups": "1 " * 50_000,
    "plus groups": "+1" + " 2" * 50_000 + "x",
    "trunk groups": "0" + "-12" * 30_000 + "a",
    "local part": "a" * 100_000 + "@",
    "domain": "@" + "b" * 100_000,
    "iban groups": "DE89" + " ABCD" * 20_000 + "z",
    "iban starts": "SW19 " * 20_000,
    "hex colons": "ab:" * 30_000 + "g",
    "jwt header": "eyJ" + "a" * 100_000,
    "jwt restarts": "eyJa." * 20_000,
    "bearer words": "bearer " * 20_000,
    "card digits": "4111" * 25_000 + "x",
    "dotted": "1.2.3." * 20_000,
}


def adversarial() -> None:
    """CPU seconds of :func:`find_all` (all detectors) per adversarial text."""
    import time

    from cdcflow.transforms.redact.detectors import build_detectors, find_all

    detectors = build_detectors()
    print("adversarial texts (all nine detectors), CPU seconds:")
    for label, text in ADVERSARIAL.items():
        start = time.process_time()
        find_all(text, detectors)
        print(f"  {label:14s} {len(text):>7,} chars  {time.process_time() - start:6.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), action="append")
    parser.add_argument("--no-adversarial", dest="adversarial", action="store_false")
    args = parser.parse_args()
    if args.adversarial:
        adversarial()
    events = make_events(args.events)
    gc.freeze()  # the generated input is a benchmark artifact: keep it out of GC passes
    print(
        f"{args.events} events in batches of {args.batch}, median of {args.repeat} runs, "
        f"Python {sys.version.split()[0]}"
    )
    for name in args.scenario or list(SCENARIOS):
        runs = sorted((run(name, events, args.batch) for _ in range(args.repeat)),
                      key=lambda r: r[1])
        rate, cpu = runs[len(runs) // 2]
        rss_mb = peak_rss_mb()
        print(
            f"  {name:14s} {args.events / cpu:>10,.0f} events/s per CPU-second "
            f"({rate:,.0f}/s wall)   CPU {cpu:5.2f} s   peak RSS {rss_mb:5.0f} MB"
        )


if __name__ == "__main__":
    main()
