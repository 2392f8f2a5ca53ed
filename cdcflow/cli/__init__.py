"""The ``cdcflow`` command line: the top layer, above both engines.

``app`` holds the click group and the ``run``/``validate``/``decode`` commands; the other
commands live in their own modules and are imported only when invoked (``cdcflow --help``
and ``validate`` never import an engine).
"""

from cdcflow.cli.app import main

__all__ = ["main"]
