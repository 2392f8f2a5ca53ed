"""The core (schemas, io, transforms, pipeline config/plan/registry) imports no engine."""

from __future__ import annotations

import json
import subprocess
import sys

ENGINES = ("apache_beam", "pyflink")
CORE_PACKAGES = ("cdcflow.core", "cdcflow.schemas", "cdcflow.io", "cdcflow.transforms")
CORE_MODULES = (
    "cdcflow",
    "cdcflow.pipelines.config",
    "cdcflow.pipelines.plan",
    "cdcflow.pipelines.registry",
)

# Runs in a fresh interpreter: imports every module of the core packages (recursively) and
# the named pipeline modules, then reports which modules were imported and which engines.
PROBE = f"""
import importlib, json, pkgutil, sys
imported = []
for name in {CORE_MODULES!r}:
    importlib.import_module(name)
    imported.append(name)
for package_name in {CORE_PACKAGES!r}:
    package = importlib.import_module(package_name)
    imported.append(package_name)
    for info in pkgutil.walk_packages(package.__path__, package_name + "."):
        importlib.import_module(info.name)
        imported.append(info.name)
engines = sorted(m for m in sys.modules if m.split(".")[0] in {ENGINES!r})
print(json.dumps({{"imported": imported, "engines": engines}}))
"""


def test_core_modules_import_no_engine() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    for expected in (
        "cdcflow.schemas.debezium.json_codec",
        "cdcflow.schemas.debezium.envelope",
        "cdcflow.schemas.logical",
        "cdcflow.schemas.ejson",
        "cdcflow.schemas.canonical",
        "cdcflow.io.files",
        "cdcflow.io.sqlite",
        "cdcflow.io.position_store",
        "cdcflow.io.state_store",
        "cdcflow.core.positions",
        "cdcflow.core.state",
        "cdcflow.core.routing",
        "cdcflow.transforms.decode",
        "cdcflow.pipelines.plan",
    ):
        assert expected in report["imported"]
    assert report["engines"] == [], f"the core imported an engine: {report['engines']}"


def test_the_probe_sees_imported_modules() -> None:
    # the same kind of probe notices a module once imported, so the test above can fail
    script = "import json, sys, wsgiref.util\nprint(json.dumps('wsgiref' in sys.modules))"
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert json.loads(proc.stdout) is True
