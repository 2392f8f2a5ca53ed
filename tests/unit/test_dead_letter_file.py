"""The JSON-lines dead-letter file: original bytes, reason, step and position, durably."""

from __future__ import annotations

import base64
import json
import os
import threading
from pathlib import Path

import pytest

from cdcflow.core.components import BuildContext
from cdcflow.core.step import event_dead_letter, raw_dead_letter
from cdcflow.errors import SinkError
from cdcflow.io import files
from cdcflow.io.files import DeadLetterFileConfig, DeadLetterFileWriter
from cdcflow.schemas.model import ChangeEvent, DeadLetter, Op, Position, TableId


def _raw(offset: int, value: bytes | None, key: bytes | None = None) -> DeadLetter:
    return raw_dead_letter(
        "decode", ValueError(f"bad line {offset}"), Position("shop.jsonl", 0, offset), value, key
    )


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def test_writes_one_json_object_per_letter_with_original_bytes(tmp_path: Path) -> None:
    path = tmp_path / "dlq" / "letters.jsonl"
    writer = DeadLetterFileWriter(path)
    writer.open()
    original = b'{"before":null,"after":{"id":1004,"total":"9.\xff'
    writer.write([_raw(16, original, key=b'{"id":1004}'), _raw(17, b"[1,2", None)])
    first, second = _lines(path)
    assert set(first) == {
        "step",
        "reason",
        "error_type",
        "position",
        "failed_at_ms",
        "key_b64",
        "value_b64",
    }
    assert first["step"] == "decode"
    assert first["reason"] == "bad line 16"
    assert first["error_type"] == "ValueError"
    assert first["position"] == {"stream": "shop.jsonl", "partition": 0, "offset": 16}
    assert base64.b64decode(first["value_b64"]) == original
    assert base64.b64decode(first["key_b64"]) == b'{"id":1004}'
    assert first["failed_at_ms"] > 1_600_000_000_000
    assert second["key_b64"] is None
    assert base64.b64decode(second["value_b64"]) == b"[1,2"
    assert path.read_bytes().endswith(b"\n")


def test_event_dead_letters_carry_the_canonical_event(tmp_path: Path) -> None:
    event = ChangeEvent(
        op=Op.CREATE,
        table=TableId("shop", "public", "orders"),
        position=Position("orders", 2, 40),
        key={"id": 1},
        after={"id": 1, "s": "x"},
    )
    writer = DeadLetterFileWriter(tmp_path / "d.jsonl")
    writer.open()
    writer.write([event_dead_letter("sink:mirror", event, TypeError("cannot store"))])
    (letter,) = _lines(tmp_path / "d.jsonl")
    assert letter["step"] == "sink:mirror"
    assert letter["reason"] == "cannot store"
    assert letter["position"] == {"stream": "orders", "partition": 2, "offset": 40}
    assert letter["value_b64"] is None
    assert letter["event"]["op"] == "c"
    assert letter["event"]["table"] == "shop.public.orders"
    assert letter["event"]["after"] == {"id": 1, "s": "x"}


def test_appends_across_writes_and_writers(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    first = DeadLetterFileWriter(path)
    first.open()
    first.write([_raw(0, b"a")])
    first.write([_raw(1, b"b")])
    first.close()
    second = DeadLetterFileWriter(path)
    second.open()
    second.write([_raw(2, b"c")])
    assert [line["position"]["offset"] for line in _lines(path)] == [0, 1, 2]


def test_each_write_is_flushed_and_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "d.jsonl"
    synced: list[int] = []
    real_fsync = os.fsync

    def fake_fsync(fd: int) -> None:
        # The data must already be in the file when fsync is called.
        synced.append(len(path.read_bytes()))
        real_fsync(fd)

    monkeypatch.setattr(files.os, "fsync", fake_fsync)
    writer = DeadLetterFileWriter(path)
    writer.open()
    writer.write([_raw(0, b"a"), _raw(1, b"b")])
    writer.write([_raw(2, b"c")])
    assert len(synced) == 2
    assert synced[0] > 0
    assert synced[1] == path.stat().st_size


def test_empty_write_touches_nothing(tmp_path: Path) -> None:
    writer = DeadLetterFileWriter(tmp_path / "d.jsonl")
    writer.open()
    writer.write([])
    assert not (tmp_path / "d.jsonl").exists()


def test_unwritable_destination_is_a_sink_error(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").mkdir()
    writer = DeadLetterFileWriter(tmp_path / "d.jsonl")
    with pytest.raises(SinkError, match="cannot write dead letters to"):
        writer.write([_raw(0, b"a")])


def test_describe_counts_letters(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    writer = DeadLetterFileWriter(path)
    assert writer.describe() == [f"dead letters: 0 ({path})"]
    writer.open()
    writer.write([_raw(0, b"a"), _raw(1, b"b"), _raw(2, b"c")])
    assert writer.describe() == [f"dead letters: 3 in {path}"]


def test_concurrent_writers_do_not_interleave_lines(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    writer = DeadLetterFileWriter(path)
    writer.open()
    big = b"x" * 5000

    def work(thread: int) -> None:
        for i in range(25):
            writer.write([_raw(thread * 1000 + i, big), _raw(thread * 1000 + i, big)])

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    letters = _lines(path)
    assert len(letters) == 200
    assert all(base64.b64decode(letter["value_b64"]) == big for letter in letters)


def test_config_builds_a_writer_relative_to_the_pipeline(tmp_path: Path) -> None:
    config = DeadLetterFileConfig(type="file", path="out/dead.jsonl")
    writer = config.build(BuildContext(pipeline="p", base_dir=tmp_path))
    assert isinstance(writer, DeadLetterFileWriter)
    assert writer.path == tmp_path / "out" / "dead.jsonl"
    writer.open()
    assert (tmp_path / "out").is_dir()


def test_dead_letter_file_writer_pickles_without_its_lock(tmp_path):
    import pickle

    from cdcflow.io.files import DeadLetterFileWriter

    writer = DeadLetterFileWriter(tmp_path / "dl.jsonl")
    clone = pickle.loads(pickle.dumps(writer))
    assert clone.path == writer.path
    assert clone._lock is not writer._lock
