"""Make the TaskManager's embedded Python see what the driver's interpreter sees (no PyFlink).

Flink's ``python.pythonpath`` puts the driver's site-packages on the workers' ``sys.path``, but
entries added that way are plain path entries: their ``.pth`` files are not processed. Those
files are how ``pip install -e`` makes an editable package importable (a line naming the
source directory, or an ``import`` line installing setuptools' editable finder), for
cdcflow's own checkout and for plugins alike. :func:`activate` processes them the way the
interpreter does at start-up (``site.addsitedir``), once per worker process, before the
pipeline's configuration (which names the plugins' classes) is unpickled.
"""

from __future__ import annotations

import os
import site
import sys
import threading
from collections.abc import Iterable

_done: set[str] = set()
_lock = threading.Lock()


def activate(directories: Iterable[str]) -> list[str]:
    """Process the ``.pth`` files of each existing directory once; returns the ones done now.

    Directories that do not exist on this machine (a driver path on a remote worker) are
    skipped; a directory already processed in this process is not processed again (an
    ``import`` line would otherwise install its finder twice after a restart).
    """
    processed: list[str] = []
    with _lock:
        for directory in directories:
            path = os.path.abspath(directory)
            if path in _done or not os.path.isdir(path):
                continue
            _done.add(path)
            if path not in sys.path:
                sys.path.append(path)
            site.addsitedir(path)
            processed.append(path)
    return processed
