#!/usr/bin/env bash
# An Elasticsearch 8.19 node as a JVM from Maven Central artifacts (server jar, transport-netty4,
# launcher in elasticsearch/src), single-node, security off, on 127.0.0.1:${ES_PORT:-19200};
# data under var/services/elasticsearch. Modules not on Maven Central (painless, reindex,
# analysis-common, mapper-extras) are absent: the store uses none of them.
set -euo pipefail
source "$(dirname "$0")/common.sh"
HERE=$(cd "$(dirname "$0")" && pwd)/elasticsearch
HTTP_PORT=${ES_PORT:-19200}
TRANSPORT_PORT=${ES_TRANSPORT_PORT:-19300}
DIR=$SERVICES_VAR/elasticsearch
PIDFILE=$DIR/elasticsearch.pid
LOG=$DIR/elasticsearch.log
JAVA=${JAVA:-java}
JAR=$DIR/build/elasticsearch-node-1.jar

build() {
  if [ ! -s "$JAR" ] || [ ! -s "$DIR/cp.txt" ] || [ -n "$(find "$HERE/src" "$HERE/pom.xml" -newer "$JAR" 2>/dev/null)" ]; then
    echo "elasticsearch: building the launcher and resolving the classpath with Maven"
    mkdir -p "$DIR"
    { mvn -B -f "$HERE/pom.xml" -Dbuild.dir="$DIR/build" -Dstyle.color=never package -DskipTests &&
      mvn -B -f "$HERE/pom.xml" -Dbuild.dir="$DIR/build" -Dstyle.color=never dependency:build-classpath \
        -Dmdep.outputFile="$DIR/cp.txt"; } >"$DIR/maven.log" 2>&1 || { tail -40 "$DIR/maven.log" >&2; return 1; }
  fi
}

start() {
  mkdir -p "$DIR/home/config" "$DIR/data" "$DIR/logs" "$DIR/tmp"
  if running "$PIDFILE"; then echo "elasticsearch: already running (pid $(cat "$PIDFILE"))"; return 0; fi
  build
  sed -e "s#@DATA@#$DIR#g" -e "s#@HTTP_PORT@#$HTTP_PORT#g" -e "s#@TRANSPORT_PORT@#$TRANSPORT_PORT#g" \
    "$HERE/elasticsearch.yml.in" >"$DIR/home/config/elasticsearch.yml"
  cp "$HERE/log4j2.properties" "$DIR/home/config/log4j2.properties"
  # A subset of Elasticsearch's own system JVM options.
  # shellcheck disable=SC2086
  $JAVA ${ES_HEAP:--Xms256m -Xmx512m -XX:MaxDirectMemorySize=128m} -XX:+UseSerialGC -XX:+ExitOnOutOfMemoryError \
    -Dfile.encoding=UTF-8 -Djava.awt.headless=true -Djna.nosys=true -XX:-OmitStackTraceInFastThrow \
    -Des.networkaddress.cache.ttl=60 -Des.networkaddress.cache.negative.ttl=10 \
    -Dio.netty.noUnsafe=true -Dio.netty.noKeySetOptimization=true -Dio.netty.recycler.maxCapacityPerThread=0 \
    -Dlog4j.shutdownHookEnabled=false -Dlog4j2.disable.jmx=true -Dlog4j2.formatMsgNoLookups=true \
    -Djava.io.tmpdir="$DIR/tmp" \
    -cp "$JAR:$(cat "$DIR/cp.txt")" tracardi.devtools.elasticsearch.EsMain "$DIR/home" \
    >"$LOG" 2>&1 &
  echo $! >"$PIDFILE"
  wait_until 120 "$PIDFILE" "$LOG" curl -sf "http://127.0.0.1:$HTTP_PORT/_cluster/health?wait_for_status=yellow&timeout=1s"
  echo "elasticsearch: ready on http://127.0.0.1:$HTTP_PORT (pid $(cat "$PIDFILE"))"
}

case "${1:-}" in
  start) start ;;
  stop) stop_pid "$PIDFILE" 60 && echo "elasticsearch: stopped" ;;
  status) running "$PIDFILE" && echo "elasticsearch: running (pid $(cat "$PIDFILE"))" || { echo "elasticsearch: stopped"; exit 1; } ;;
  build) build ;;
  *) echo "usage: $0 start|stop|status|build" >&2; exit 2 ;;
esac
