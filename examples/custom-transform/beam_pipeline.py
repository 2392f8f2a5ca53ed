"""The same steps in a hand-written Apache Beam pipeline (no YAML).

Run: python beam_pipeline.py [output.sqlite]   (with the plugin installed: pip install ./plugin)
"""

from __future__ import annotations

import sys
from pathlib import Path

import apache_beam as beam
from shop_enrich import MaskPhone, add_region

from cdcflow.beam import ApplyStep, Decode, ReadFromSource, WriteDeadLetters, WriteTo
from cdcflow.io.files import DeadLetterFileWriter, FileSource
from cdcflow.io.sqlite import SqliteWriter
from cdcflow.transforms import FunctionStep

HERE = Path(__file__).resolve().parent


def main(output: Path) -> None:
    """Read the changelog, decode, add the region, mask phones, mirror into SQLite."""
    output.parent.mkdir(parents=True, exist_ok=True)
    source = FileSource([HERE / "shop-changelog.jsonl"], key_separator="\t")
    dead = DeadLetterFileWriter(output.with_suffix(".dead-letters.jsonl"))
    with beam.Pipeline() as p:
        decoded = p | "Read" >> ReadFromSource(source) | "Decode" >> Decode(
            stream_is_topic=False
        )
        region = decoded.events | "AddRegion" >> ApplyStep(
            FunctionStep(add_region, options={"region": "ap-southeast-2"})
        )
        masked = region.events | "MaskPhone" >> ApplyStep(MaskPhone(keep=2))
        _ = masked.events | "Write" >> WriteTo(
            SqliteWriter("mirror", output, pipeline="beam-example", tables="shop.public.*")
        )
        letters = (decoded.dead_letters, region.dead_letters, masked.dead_letters)
        _ = letters | "AllDeadLetters" >> beam.Flatten() | "DLQ" >> WriteDeadLetters(dead)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "output" / "beam.sqlite")
