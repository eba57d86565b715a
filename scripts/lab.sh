#!/usr/bin/env bash
# make lab: JupyterLab on the notebooks with the project's kernel, on loopback, as a user or as root.
set -euo pipefail
venv="${1:-.venv}"
notebook_dir="${2:-notebooks}"
shift 2 || true

args=(--ServerApp.root_dir="$notebook_dir" --ServerApp.ip=127.0.0.1)
# Jupyter refuses root unless told; a container or a cloud VM often runs as root.
[ "$(id -u)" = 0 ] && args+=(--allow-root)
# The project's kernel (python3 in .venv, installed by setup) before any kernel of the same name in ~/.local.
export JUPYTER_PREFER_ENV_PATH=1
export SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}"
echo "make lab: JupyterLab on $notebook_dir with the kernel of $venv. Open the http://127.0.0.1:... address printed below"
echo "          (with its token); run the notebooks in order, 01_ingest first. Stop with Ctrl+C."
exec "$venv/bin/jupyter" lab "${args[@]}" "$@"
