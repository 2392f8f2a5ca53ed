"""Packaging for cdcflow. Heavy connectors and engines are extras."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

setup(
    name="cdcflow",
    version="0.1.0",
    description="Change-data-capture stream processing on Apache Beam and Apache Flink",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["cdcflow", "cdcflow.*"]),
    install_requires=[
        "msgspec>=0.19",
        "pydantic>=2.6",
        "PyYAML>=6.0",
        "click>=8.1",
    ],
    extras_require={
        "beam": ["apache-beam>=2.77.0"],
        "kafka": ["confluent-kafka>=2.6", "fastavro>=1.9", "httpx>=0.27"],
        "postgres": ["psycopg[binary]>=3.2"],
        "clickhouse": ["clickhouse-driver>=0.2.9"],
        # Everything for the Beam engine's .venv (what `make venv-all` installs, unpinned).
        "all": [
            "apache-beam>=2.77.0",
            "confluent-kafka>=2.6",
            "fastavro>=1.9",
            "httpx>=0.27",
            "psycopg[binary]>=3.2",
            "clickhouse-driver>=0.2.9",
        ],
        # The Flink engine: its own environment, never with the beam extra (Beam <= 2.61 pin).
        "flink": ["apache-flink==2.3.0"],
    },
    entry_points={"console_scripts": ["cdcflow=cdcflow.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3.11",
        "Topic :: Database",
    ],
)
