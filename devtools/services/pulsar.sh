#!/usr/bin/env bash
# Apache Pulsar standalone (4.0.x) as a JVM from Maven Central artifacts, on 127.0.0.1:
# broker ${PULSAR_PORT:-16650}, admin REST ${PULSAR_WEB_PORT:-18080}; data under var/services/pulsar.
set -euo pipefail
source "$(dirname "$0")/common.sh"
HERE=$(cd "$(dirname "$0")" && pwd)/pulsar
BROKER_PORT=${PULSAR_PORT:-16650}
WEB_PORT=${PULSAR_WEB_PORT:-18080}
DIR=$SERVICES_VAR/pulsar
PIDFILE=$DIR/pulsar.pid
LOG=$DIR/pulsar.log
JAVA=${JAVA:-java}

classpath() {
  if [ ! -s "$DIR/cp.txt" ] || [ "$HERE/pom.xml" -nt "$DIR/cp.txt" ]; then
    echo "pulsar: resolving the broker's classpath with Maven (first time: about 240 MB)"
    mkdir -p "$DIR/empty-repo"
    mvn -B -Dstyle.color=never -f "$HERE/pom.xml" -Dempty.repo="$DIR/empty-repo" dependency:build-classpath \
      -Dmdep.outputFile="$DIR/cp.txt" >"$DIR/maven.log" 2>&1 || { tail -40 "$DIR/maven.log" >&2; return 1; }
  fi
}

start() {
  mkdir -p "$DIR/data"
  if running "$PIDFILE"; then echo "pulsar: already running (pid $(cat "$PIDFILE"))"; return 0; fi
  classpath
  sed -e "s#@DATA@#$DIR/data#g" -e "s#@BROKER_PORT@#$BROKER_PORT#g" -e "s#@WEB_PORT@#$WEB_PORT#g" \
    "$HERE/standalone.conf.in" >"$DIR/standalone.conf"
  # The --add-opens flags and -D properties are the ones Pulsar's own launch script uses.
  # A 512 MiB heap: with 256 MiB the old generation stayed above 80 % full under load and a
  # full GC ran every few seconds; publishing 20,000 messages cost the JVM 363-524 us of CPU
  # per message against 177-203 us with 512 MiB (this machine, 6 publishing threads).
  # shellcheck disable=SC2086
  $JAVA ${PULSAR_HEAP:--Xms512m -Xmx512m -XX:MaxDirectMemorySize=256m} -XX:+UseSerialGC -XX:+ExitOnOutOfMemoryError \
    --add-opens java.base/java.io=ALL-UNNAMED --add-opens java.base/java.util.zip=ALL-UNNAMED \
    --add-opens java.base/java.nio=ALL-UNNAMED --add-opens java.base/jdk.internal.misc=ALL-UNNAMED \
    --add-opens java.base/sun.net=ALL-UNNAMED --add-opens java.management/sun.management=ALL-UNNAMED \
    --add-exports java.base/jdk.internal.platform=ALL-UNNAMED \
    -Dio.netty.tryReflectionSetAccessible=true -Djava.net.preferIPv4Stack=true -Djute.maxbuffer=10485760 \
    -Dlog4j.shutdownHookEnabled=false -Dlog4j.configurationFile="$HERE/log4j2.xml" -Dlog4j2.is.webapp=false \
    -Dbookkeeper.metadata.bookie.drivers=org.apache.pulsar.metadata.bookkeeper.PulsarMetadataBookieDriver \
    -Dbookkeeper.metadata.client.drivers=org.apache.pulsar.metadata.bookkeeper.PulsarMetadataClientDriver \
    -cp "$(cat "$DIR/cp.txt")" org.apache.pulsar.PulsarStandaloneStarter \
    --config "$DIR/standalone.conf" -nfw -nss \
    --metadata-url "rocksdb://$DIR/data/metadata" \
    --bookkeeper-dir "$DIR/data/bookkeeper" \
    --zookeeper-dir "$DIR/data/zookeeper-unused" \
    >"$LOG" 2>&1 &
  echo $! >"$PIDFILE"
  wait_until 180 "$PIDFILE" "$LOG" curl -sf "http://127.0.0.1:$WEB_PORT/admin/v2/namespaces/public"
  echo "pulsar: ready on pulsar://127.0.0.1:$BROKER_PORT, admin http://127.0.0.1:$WEB_PORT (pid $(cat "$PIDFILE"))"
}

case "${1:-}" in
  start) start ;;
  stop) stop_pid "$PIDFILE" 60 && echo "pulsar: stopped" ;;
  status) running "$PIDFILE" && echo "pulsar: running (pid $(cat "$PIDFILE"))" || { echo "pulsar: stopped"; exit 1; } ;;
  classpath) classpath ;;
  *) echo "usage: $0 start|stop|status|classpath" >&2; exit 2 ;;
esac
