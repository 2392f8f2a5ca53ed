"""The native Apache Flink engine: the same pipeline YAML as a PyFlink DataStream job.

Only :mod:`cdcflow.flink.job` and :mod:`cdcflow.flink.entry` import PyFlink; the other modules
(options, the job plan, the batch processor, the REST client) are plain Python, so they can be
unit-tested, and the CLI can validate a pipeline, without Flink installed.
"""
