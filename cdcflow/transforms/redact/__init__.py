"""PII redaction: ``type: redact`` (column rules, allow-lists, content detectors).

See docs/redaction.md. :class:`RedactConfig` is the YAML model, :class:`RedactStep` the
engine-neutral step it builds.
"""

from cdcflow.transforms.redact.config import RedactConfig
from cdcflow.transforms.redact.step import RedactStep

__all__ = ["RedactConfig", "RedactStep"]
