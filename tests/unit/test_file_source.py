"""The ``file`` source: JSON-lines files, one partition per file, offsets are 0-based lines."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from cdcflow.core.components import BuildContext, ComponentError
from cdcflow.io.files import FileSource, FileSourceConfig
from cdcflow.schemas.model import Position, RawBatch
from cdcflow.transforms.decode import DecodeStep


def _file(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def _read(source: FileSource, stream: str, start: int | None = None) -> list[RawBatch]:
    return list(source.read(stream, 0, start))


def _values(batches: list[RawBatch]) -> list[tuple[int, bytes | None, bytes | None]]:
    return [(r.position.offset, r.key, r.value) for b in batches for r in b.records]


def test_partitions_are_one_per_file_sorted(tmp_path: Path) -> None:
    paths = [_file(tmp_path, n, b"{}\n") for n in ("orders.jsonl", "customers.jsonl")]
    source = FileSource(paths)
    assert source.partitions() == [("customers.jsonl", 0), ("orders.jsonl", 0)]


def test_two_files_with_the_same_name_are_refused(tmp_path: Path) -> None:
    a = _file(tmp_path, "a/x.jsonl", b"")
    b = _file(tmp_path, "b/x.jsonl", b"")
    with pytest.raises(ValueError, match="two files share a name"):
        FileSource([a, b])


def test_offsets_are_zero_based_line_numbers(tmp_path: Path) -> None:
    _file(tmp_path, "o.jsonl", b'{"a":0}\n{"a":1}\r\n{"a":2}')
    batches = _read(FileSource([tmp_path / "o.jsonl"]), "o.jsonl")
    assert _values(batches) == [(0, None, b'{"a":0}'), (1, None, b'{"a":1}'), (2, None, b'{"a":2}')]
    record = batches[0].records[1]
    assert record.position == Position("o.jsonl", 0, 1)
    assert batches[-1].last_offset == 2
    assert (batches[0].stream, batches[0].partition) == ("o.jsonl", 0)


def test_start_offset_resumes_at_that_line(tmp_path: Path) -> None:
    _file(tmp_path, "o.jsonl", b"".join(b'{"n":%d}\n' % i for i in range(6)))
    source = FileSource([tmp_path / "o.jsonl"])
    assert [o for o, _, _ in _values(_read(source, "o.jsonl", 4))] == [4, 5]
    assert [o for o, _, _ in _values(_read(source, "o.jsonl", 0))] == [0, 1, 2, 3, 4, 5]
    assert [o for o, _, _ in _values(_read(source, "o.jsonl", None))] == [0, 1, 2, 3, 4, 5]


def test_start_past_the_end_reads_nothing(tmp_path: Path) -> None:
    _file(tmp_path, "o.jsonl", b"{}\n{}\n")
    source = FileSource([tmp_path / "o.jsonl"])
    assert _read(source, "o.jsonl", 2) == []
    assert _read(source, "o.jsonl", 99) == []


def test_empty_file_reads_nothing(tmp_path: Path) -> None:
    _file(tmp_path, "o.jsonl", b"")
    assert _read(FileSource([tmp_path / "o.jsonl"]), "o.jsonl") == []


def test_key_separator(tmp_path: Path) -> None:
    _file(
        tmp_path,
        "o.jsonl",
        b'{"id":1}\t{"after":{"note":"a\\tb"}}\n'  # escaped tab inside JSON stays in the value
        b'{"after":{}}\n'  # no separator: no key
        b'{"id":2}\tnull\n'  # tombstone with key
        b'{"id":3}\t{"x":"\t"}\n',  # a raw second separator stays in the value
    )
    source = FileSource([tmp_path / "o.jsonl"], key_separator="\t")
    assert _values(_read(source, "o.jsonl")) == [
        (0, b'{"id":1}', b'{"after":{"note":"a\\tb"}}'),
        (1, None, b'{"after":{}}'),
        (2, b'{"id":2}', b"null"),
        (3, b'{"id":3}', b'{"x":"\t"}'),
    ]


def test_multi_character_key_separator(tmp_path: Path) -> None:
    _file(tmp_path, "o.jsonl", b'k1|||{"v":1}\n')
    source = FileSource([tmp_path / "o.jsonl"], key_separator="|||")
    assert _values(_read(source, "o.jsonl")) == [(0, b"k1", b'{"v":1}')]


def test_without_separator_the_whole_line_is_the_value(tmp_path: Path) -> None:
    _file(tmp_path, "o.jsonl", b'{"id":1}\t{"v":1}\n')
    assert _values(_read(FileSource([tmp_path / "o.jsonl"]), "o.jsonl")) == [
        (0, None, b'{"id":1}\t{"v":1}')
    ]


def test_blank_lines_are_skipped_but_counted(tmp_path: Path) -> None:
    _file(tmp_path, "o.jsonl", b'\n{"a":1}\n   \n\r\n{"a":2}\n\n\n')
    batches = _read(FileSource([tmp_path / "o.jsonl"]), "o.jsonl")
    assert _values(batches) == [(1, None, b'{"a":1}'), (4, None, b'{"a":2}')]
    assert batches[-1].last_offset == 6, "trailing blank lines are covered by the position"


def test_only_blank_lines_still_advance_the_position(tmp_path: Path) -> None:
    _file(tmp_path, "o.jsonl", b"\n\n\n")
    batches = _read(FileSource([tmp_path / "o.jsonl"]), "o.jsonl")
    assert [(b.records, b.last_offset) for b in batches] == [([], 2)]


def test_batches_respect_batch_size(tmp_path: Path) -> None:
    _file(tmp_path, "o.jsonl", b"".join(b'{"n":%d}\n' % i for i in range(5)))
    batches = _read(FileSource([tmp_path / "o.jsonl"], batch_size=2), "o.jsonl")
    assert [[r.position.offset for r in b.records] for b in batches] == [[0, 1], [2, 3], [4]]
    assert [b.last_offset for b in batches] == [1, 3, 4]


def test_no_empty_batch_after_an_exact_multiple(tmp_path: Path) -> None:
    _file(tmp_path, "o.jsonl", b"".join(b'{"n":%d}\n' % i for i in range(4)))
    batches = _read(FileSource([tmp_path / "o.jsonl"], batch_size=2), "o.jsonl")
    assert [b.last_offset for b in batches] == [1, 3]
    assert all(b.records for b in batches)


def test_blank_lines_after_a_full_batch_get_their_own_batch(tmp_path: Path) -> None:
    _file(tmp_path, "o.jsonl", b"{}\n{}\n\n\n")
    batches = _read(FileSource([tmp_path / "o.jsonl"], batch_size=2), "o.jsonl")
    assert [(len(b.records), b.last_offset) for b in batches] == [(2, 1), (0, 3)]


def test_invalid_lines_are_passed_on_as_bytes(tmp_path: Path) -> None:
    """The source does not parse: undecodable lines reach the decode step (and dead letters)."""
    _file(tmp_path, "o.jsonl", b'{"broken": \n\xff\xfe not utf-8\n')
    assert _values(_read(FileSource([tmp_path / "o.jsonl"]), "o.jsonl")) == [
        (0, None, b'{"broken": '),
        (1, None, b"\xff\xfe not utf-8"),
    ]


def test_constructor_validation(tmp_path: Path) -> None:
    path = _file(tmp_path, "o.jsonl", b"")
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        FileSource([path], batch_size=0)
    with pytest.raises(ValueError, match="key_separator must not be empty"):
        FileSource([path], key_separator="")


def test_check_reports_unreadable_files(tmp_path: Path) -> None:
    present = _file(tmp_path, "a.jsonl", b"")
    source = FileSource([present, tmp_path / "gone.jsonl"])
    assert source.check() == [f"cannot read {tmp_path / 'gone.jsonl'}"]
    assert FileSource([present]).check() == []


def test_source_pickles_and_reads_after_unpickling(tmp_path: Path) -> None:
    _file(tmp_path, "o.jsonl", b'k\t{"v":1}\n')
    source = pickle.loads(pickle.dumps(FileSource([tmp_path / "o.jsonl"], key_separator="\t")))
    assert _values(_read(source, "o.jsonl")) == [(0, b"k", b'{"v":1}')]


def test_config_builds_from_a_glob_relative_to_the_pipeline(tmp_path: Path) -> None:
    _file(tmp_path, "data/b.jsonl", b"{}\n")
    _file(tmp_path, "data/a.jsonl", b"{}\n")
    _file(tmp_path, "data/skip.txt", b"{}\n")
    config = FileSourceConfig(type="file", path="data/*.jsonl", key_separator="\t", batch_size=7)
    source = config.build(BuildContext(pipeline="p", base_dir=tmp_path))
    assert source.partitions() == [("a.jsonl", 0), ("b.jsonl", 0)]
    assert source.batch_size == 7
    assert source.key_separator == b"\t"
    assert source.stream_is_topic is False


def test_config_without_matches_raises_a_keyed_error(tmp_path: Path) -> None:
    config = FileSourceConfig(type="file", path="nothing/*.jsonl")
    with pytest.raises(ComponentError) as info:
        config.build(BuildContext(pipeline="p", base_dir=tmp_path))
    assert info.value.key == "path"
    assert "no file matches" in info.value.detail


def test_config_decode_step_carries_the_settings() -> None:
    config = FileSourceConfig(type="file", path="x", key_columns={"shop.*.tags": ["tag"]})
    step = DecodeStep.from_spec(config.decoding())
    assert step.format == "debezium-json"  # type: ignore[attr-defined]
    assert step.tombstones == "marker"  # type: ignore[attr-defined]
    assert step.stream_is_topic is False  # type: ignore[attr-defined]
    assert step.key_columns == {"shop.*.tags": ["tag"]}  # type: ignore[attr-defined]
