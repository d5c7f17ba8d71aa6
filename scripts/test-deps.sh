#!/usr/bin/env bash
# Installs what the test suite drives besides Rust: fio (the baseline `rill tune probe` is
# checked against), iproute2 (the cluster tests' network namespaces), Prometheus and promtool
# (the metrics tests) and the Kafka clients under test (kcat; confluent-kafka, kafka-python with
# their codecs; kafkajs; the Java client through Maven). Quick when everything is there already. Needs root for apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
missing=()
command -v fio >/dev/null 2>&1 || missing+=(fio)
command -v kcat >/dev/null 2>&1 || missing+=(kcat)
command -v node >/dev/null 2>&1 || missing+=(nodejs npm)
command -v python3 >/dev/null 2>&1 || missing+=(python3 python3-pip)
# The cluster tests put each node in its own network namespace (ip netns, veth, a bridge).
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
# The Java Kafka client runs from Maven Central's jars (tools/tests/java).
command -v mvn >/dev/null 2>&1 || missing+=(maven)
command -v java >/dev/null 2>&1 || missing+=(default-jdk-headless)
# The metrics tests check /metrics with promtool and scrape it with a real Prometheus server.
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  prometheus=1
fi
if [ ${#missing[@]} -gt 0 ] || [ -n "${prometheus:-}" ]; then
  apt-get update -q >/dev/null
fi
if [ ${#missing[@]} -gt 0 ]; then
  apt-get install -y -q "${missing[@]}" >/dev/null
fi
if [ -n "${prometheus:-}" ]; then
  apt-get install -y -q --no-install-recommends prometheus >/dev/null
fi
if ! python3 -c "import confluent_kafka, kafka, lz4, zstandard, aiokafka, cramjam" >/dev/null 2>&1; then
  python3 -m pip install -q --disable-pip-version-check -r tools/tests/kafka/requirements.txt \
    || python3 -m pip install -q --disable-pip-version-check --break-system-packages \
      -r tools/tests/kafka/requirements.txt
fi
if [ ! -d tools/tests/kafka/node_modules/kafkajs ] || [ ! -d tools/tests/kafka/node_modules/kafkajs-lz4 ]; then
  (cd tools/tests/kafka && npm ci --no-audit --no-fund --loglevel=error)
fi
for project in tools/tests/java tools/tests/java/connect; do
  if [ ! -s "$project/classpath.txt" ] || [ "$project/pom.xml" -nt "$project/classpath.txt" ]; then
    mvn -q -B -f "$project/pom.xml" dependency:build-classpath -Dmdep.outputFile=classpath.txt >/dev/null
  fi
done
