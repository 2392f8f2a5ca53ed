"""cdcflow: change-data-capture stream processing on Apache Beam and Apache Flink.

The engine-neutral core (``cdcflow.schemas``, ``cdcflow.transforms``, ``cdcflow.io``) imports
neither Apache Beam nor PyFlink; the engine adapters live in ``cdcflow.beam`` (and, later,
``cdcflow.flink``).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
