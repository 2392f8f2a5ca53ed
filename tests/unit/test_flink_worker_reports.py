"""What the Flink operators tell the local CLI, and how workers see editable installs (no Flink).

:mod:`cdcflow.flink.stats`: the per-instance count files summed for the run summary and the
first error of each instance, fatal ones first. :mod:`cdcflow.flink.sitedirs`: the ``.pth``
files of the driver's site-packages processed on a worker (path lines and ``import`` lines).
``flink_cli._first_line``: the Python error line picked out of a Java/py4j failure text.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cdcflow.cli.flink_run import _first_line
from cdcflow.errors import ConfigError
from cdcflow.flink import sitedirs
from cdcflow.flink.stats import (
    RunStats,
    StatsFile,
    first_error,
    python_error_in_logs,
    read_stats,
    worker_error,
    write_error,
)


def test_stats_of_every_instance_are_summed(tmp_path: Path) -> None:
    StatsFile(str(tmp_path), "a").write(
        RunStats(10, 1, {"mirror": 9}, {("t", "0"): 41})
    )
    # a restart of the first instance read 4 records again; a third had partition 1
    StatsFile(str(tmp_path), "b").write(RunStats(4, 0, {"mirror": 0}, {("t", "0"): 45}))
    StatsFile(str(tmp_path), "c").write(
        RunStats(7, 2, {"mirror": 5, "history": 5}, {("t", "1"): 6})
    )
    (tmp_path / "d.json").write_text("{trunc")  # a file being replaced is skipped
    write_error(str(tmp_path), "a", worker_error(_raised(OSError("x")), "batch"))  # not stats
    total = read_stats(tmp_path)
    assert total == RunStats(21, 3, {"mirror": 14, "history": 5}, {("t", "0"): 45, ("t", "1"): 6})
    assert read_stats(tmp_path / "none") == RunStats()


def test_a_stats_file_is_replaced_whole(tmp_path: Path) -> None:
    stats_file = StatsFile(str(tmp_path), "x")
    stats_file.write(RunStats(1))
    stats_file.write(RunStats(2, written={"s": 2}))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]
    assert RunStats.from_json((tmp_path / "x.json").read_bytes()) == RunStats(2, written={"s": 2})


def _raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_import_and_config_errors_at_open_cannot_be_cured_by_a_restart() -> None:
    missing = worker_error(_raised(ModuleNotFoundError("No module named 'x'")), "open")
    assert missing.summary == "ModuleNotFoundError: No module named 'x'"
    assert not missing.restartable
    assert "Traceback" in missing.traceback
    assert not worker_error(_raised(ConfigError("bad")), "open").restartable
    # a sink that is down at open, or any error while writing a batch, may pass
    assert worker_error(_raised(ConnectionError("refused")), "open").restartable
    assert worker_error(_raised(ImportError("lazy import")), "batch").restartable


def test_first_error_prefers_a_fatal_one_and_keeps_an_instances_first(tmp_path: Path) -> None:
    assert first_error(tmp_path) is None
    transient = worker_error(_raised(ConnectionError("refused")), "batch")
    write_error(str(tmp_path), "a", transient)
    assert first_error(tmp_path) == transient
    fatal = worker_error(_raised(ModuleNotFoundError("No module named 'x'")), "open")
    write_error(str(tmp_path), "b", fatal)
    write_error(str(tmp_path), "b", transient)  # later errors of an instance are ignored
    assert first_error(tmp_path) == fatal


def test_pth_files_of_a_site_directory_are_processed_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site_dir = tmp_path / "site-packages"
    source = tmp_path / "plugin-src"
    (source / "plugin_from_pth").mkdir(parents=True)
    (source / "plugin_from_pth" / "__init__.py").write_text("VALUE = 42\n")
    site_dir.mkdir()
    # what pip install -e writes: a path line, and an import line (setuptools' finder)
    (site_dir / "__editable__.plugin.pth").write_text(f"{source}\n")
    (site_dir / "counter.pth").write_text("import sitedir_counter; sitedir_counter.bump()\n")
    (site_dir / "sitedir_counter.py").write_text(
        "COUNT = 0\ndef bump():\n    global COUNT\n    COUNT += 1\n"
    )
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sitedirs, "_done", set())
    assert sitedirs.activate([str(site_dir), str(tmp_path / "absent")]) == [str(site_dir)]
    import plugin_from_pth  # type: ignore[import-not-found]
    import sitedir_counter  # type: ignore[import-not-found]

    assert plugin_from_pth.VALUE == 42
    assert sitedirs.activate([str(site_dir)]) == []  # a restart does not install it again
    assert sitedir_counter.COUNT == 1
    for name in ("plugin_from_pth", "sitedir_counter"):
        sys.modules.pop(name, None)


def test_first_line_picks_the_python_error_out_of_a_java_failure() -> None:
    text = (
        "py4j.protocol.Py4JJavaError: An error occurred while calling o1.get.\n"
        ": java.util.concurrent.ExecutionException: org.apache.flink.runtime.JobException\n"
        "Caused by: java.lang.RuntimeException: Error received from SDK harness\n"
        'Traceback (most recent call last):\n  File "x.py", line 1, in <module>\n'
        "ModuleNotFoundError: No module named 'upper_note'\n"
    )
    assert _first_line(RuntimeError(text)) == "ModuleNotFoundError: No module named 'upper_note'"
    java = "java.lang.IllegalStateException: boom\nCaused by: java.io.IOException: disk"
    assert _first_line(RuntimeError(java)) == "java.lang.IllegalStateException: boom"
    assert _first_line(RuntimeError("")) == "RuntimeError"


def test_the_first_python_error_is_found_in_flinks_log(tmp_path: Path) -> None:
    import os
    import time

    old = tmp_path / "flink-old.log"
    old.write_text("pemja.core.PythonException: <class 'KeyError'>: 'stale'\n")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    assert python_error_in_logs(tmp_path, since=time.time() - 60) is None
    log = tmp_path / "flink-root-python-vm.log"
    log.write_text(
        "INFO starting\n"
        "pemja.core.PythonException: <class 'ModuleNotFoundError'>: No module named 'plug'\n"
        "pemja.core.PythonException: <class 'KeyError'>: 'later'\n"
    )
    assert python_error_in_logs(tmp_path, since=time.time() - 60) == (
        "ModuleNotFoundError: No module named 'plug'",
        log,
    )
