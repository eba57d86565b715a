#!/usr/bin/env bash
# make cluster: a Spark standalone cluster on loopback from the pip package alone (a master, N one-core workers).
#   bash scripts/cluster.sh start|stop|status      settings: CLUSTER_PORT (7077), CLUSTER_WEBUI_PORT (8080),
#   CLUSTER_WORKERS (2), CLUSTER_WORKER_MEMORY (2g), CLUSTER_DIR (.cluster: logs, pids, work dirs), VENV (.venv)
set -euo pipefail
action="${1:-start}"
venv="${VENV:-.venv}"
dir="${CLUSTER_DIR:-.cluster}"
port="${CLUSTER_PORT:-7077}"
webui="${CLUSTER_WEBUI_PORT:-8080}"
workers="${CLUSTER_WORKERS:-2}"
memory="${CLUSTER_WORKER_MEMORY:-2g}"
python="$venv/bin/python"
SPARK_HOME="$("$python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"
export SPARK_HOME SPARK_LOCAL_IP=127.0.0.1
master_url="spark://127.0.0.1:$port"

alive_workers() {  # how many workers the master's JSON status lists as ALIVE (-1: the master does not answer)
  "$python" - "$webui" <<'PY'
import json, sys, urllib.request
try:
    status = json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/json/", timeout=2))
except OSError:
    print(-1)
else:
    print(sum(worker["state"] == "ALIVE" for worker in status["workers"]))
PY
}

stop() {
  for pid_file in "$dir"/worker-*.pid "$dir"/master.pid; do
    [ -f "$pid_file" ] || continue
    kill "$(cat "$pid_file")" 2>/dev/null || true
    rm -f "$pid_file"
  done
}

case "$action" in
  start)
    if [ "$(alive_workers)" -ge 0 ]; then
      echo "cluster: a master already answers on http://127.0.0.1:$webui (stop it first: make cluster-stop)" >&2
      exit 1
    fi
    mkdir -p "$dir"
    nohup "$SPARK_HOME/bin/spark-class" org.apache.spark.deploy.master.Master --host 127.0.0.1 --port "$port" \
      --webui-port "$webui" >"$dir/master.log" 2>&1 &
    echo $! >"$dir/master.pid"
    for i in $(seq 1 "$workers"); do
      nohup "$SPARK_HOME/bin/spark-class" org.apache.spark.deploy.worker.Worker "$master_url" --host 127.0.0.1 \
        --cores 1 --memory "$memory" --webui-port "$((webui + i))" --work-dir "$dir/worker-$i" >"$dir/worker-$i.log" 2>&1 &
      echo $! >"$dir/worker-$i.pid"
    done
    for _ in $(seq 1 120); do
      [ "$(alive_workers)" -ge "$workers" ] && break
      sleep 1
    done
    if [ "$(alive_workers)" -lt "$workers" ]; then
      echo "cluster: $workers workers did not register within 120 s; see $dir/*.log" >&2
      stop
      exit 1
    fi
    echo "cluster: $master_url with $workers one-core workers (status: http://127.0.0.1:$webui)."
    echo "         run a step on it: make run RUN_ARGS=\"-p spark_master $master_url\"; stop it: make cluster-stop"
    ;;
  stop)
    stop
    echo "cluster: stopped"
    ;;
  status)
    echo "cluster: $(alive_workers) workers alive at $master_url"
    ;;
  *)
    echo "usage: scripts/cluster.sh start|stop|status" >&2
    exit 2
    ;;
esac
