"""Engine-neutral steps: each turns a batch of events into a batch of events plus dead letters.

Write a custom step by subclassing :class:`EventStep` (one method per event) or wrap a plain
function in :class:`FunctionStep`; see docs/extending.md.
"""

from cdcflow.core.step import Step, StepResult
from cdcflow.transforms.event_step import EventStep, FunctionStep

__all__ = ["EventStep", "FunctionStep", "Step", "StepResult"]
