#!/bin/bash
# Runs a Kafka class with the jars in /opt/kafka/libs, like the distribution's script.
set -euo pipefail
[[ $# -ge 1 ]] || { echo "usage: kafka-run-class.sh CLASS [ARGS]" >&2; exit 64; }
read -r -a heap <<<"${KAFKA_HEAP_OPTS:--Xmx256M}"
# Tools live for a second (the health check starts one every 10 s): a small collector and
# no optimising compiler start faster and cost less CPU. The broker sets its own.
read -r -a jvm <<<"${KAFKA_JVM_PERFORMANCE_OPTS:--XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true}"
read -r -a opts <<<"${KAFKA_OPTS:-}"
read -r -a log4j <<<"${KAFKA_LOG4J_OPTS:--Dlog4j2.configurationFile=/opt/kafka/config/tools-log4j2.properties}"
exec java "${heap[@]}" "${jvm[@]}" ${opts[@]+"${opts[@]}"} "${log4j[@]}" -cp '/opt/kafka/libs/*' "$@"
