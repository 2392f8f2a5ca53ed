"""Entry point for ``flink run -pym cdcflow.flink.entry`` and the Flink Kubernetes operator.

``cdcflow submit`` is the usual way to start a pipeline on a cluster; this module is for setups
where Flink starts the Python driver itself: ``flink run -m HOST:PORT -pym cdcflow.flink.entry
-- PIPELINE.yaml`` on a standalone cluster, or a FlinkDeployment whose job runs
``org.apache.flink.client.python.PythonDriver`` with ``-pym cdcflow.flink.entry PIPELINE.yaml``
(application mode: the driver runs in the JobManager). Flink provides the execution
environment; the pipeline is validated and planned exactly as by ``cdcflow submit``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cdcflow.errors import CdcflowError, ConfigError


def main(argv: Sequence[str] | None = None) -> int:
    """Plan the pipeline and execute it in the environment Flink gives this driver."""
    parser = argparse.ArgumentParser(prog="cdcflow.flink.entry", description=__doc__)
    parser.add_argument("pipeline", help="the pipeline YAML file")
    parser.add_argument("--jar", action="append", default=[], help="connector jar (repeatable)")
    parser.add_argument(
        "--detached", action="store_true", help="return once the job is submitted"
    )
    args = parser.parse_args(argv)
    from cdcflow.flink import job
    from cdcflow.flink.plan import prepare_job
    from cdcflow.pipelines.config import load_pipeline

    try:
        spec = prepare_job(load_pipeline(args.pipeline), args.jar)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except CdcflowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    env = job.environment(spec)
    job.build(env, spec)
    if args.detached:
        client = env.execute_async(spec.job_name)
        print(f"Job has been submitted with JobID {client.get_job_id()}")
    else:
        env.execute(spec.job_name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
