"""The runner's SIGINT/SIGTERM handling: first signal stops the readers, a second aborts."""

from __future__ import annotations

import os
import signal
import time

import pytest

from cdcflow.beam.kafka import reset_stop, stop_requested
from cdcflow.beam.runner import _stop_on_signals


def _deliver(signum: int) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(0.05)  # let the interpreter run the handler


def test_first_signal_requests_a_stop_second_aborts(monkeypatch: pytest.MonkeyPatch) -> None:
    exits: list[int] = []
    monkeypatch.setattr(os, "_exit", exits.append)
    before = signal.getsignal(signal.SIGTERM)
    reset_stop()
    try:
        with _stop_on_signals(True):
            _deliver(signal.SIGTERM)
            assert stop_requested()
            assert exits == []
            _deliver(signal.SIGINT)
            assert exits == [1]
    finally:
        reset_stop()
    assert signal.getsignal(signal.SIGTERM) is before


def test_disabled_handlers_leave_signals_alone() -> None:
    before = signal.getsignal(signal.SIGINT)
    with _stop_on_signals(False):
        assert signal.getsignal(signal.SIGINT) is before
