#!/usr/bin/env bash
# Feed the quick start's shop changelog (key TAB value lines) to the topic this example reads,
# with the producer that ships with cdcflow (no kcat needed), and create the dead-letter topic.
#   KAFKA_BOOTSTRAP=127.0.0.1:9092 examples/kafka/produce.sh [CHANGELOG]
# CDCFLOW overrides the cdcflow command (default: the clone's .venv/bin/cdcflow, then PATH).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
changelog="${1:-$here/../quickstart/shop-changelog.jsonl}"
bootstrap="${KAFKA_BOOTSTRAP:-127.0.0.1:9092}"
if [ -z "${CDCFLOW:-}" ]; then
  if [ -x "$here/../../.venv/bin/cdcflow" ]; then CDCFLOW="$here/../../.venv/bin/cdcflow"
  else CDCFLOW="cdcflow"; fi
fi
# Each line becomes one message (the text before the tab is its key; a null value a tombstone).
"$CDCFLOW" produce --bootstrap-servers "$bootstrap" --topic demo.shop.changelog \
  --create-partitions 1 "$changelog"
# The dead-letter topic must exist before the pipeline runs: create it (nothing is sent).
"$CDCFLOW" produce --bootstrap-servers "$bootstrap" --topic demo.dlq --create-partitions 1 /dev/null
