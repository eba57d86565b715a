#!/usr/bin/env bash
# Creates the project's virtualenv with the pinned stack, and checks the system parts Spark needs.
set -euo pipefail
python_bin="${1:-python3.11}"
venv="${2:-.venv}"

if ! command -v "$python_bin" >/dev/null 2>&1; then
  if command -v python3 >/dev/null && python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    python_bin=python3
  else
    echo "setup: Python 3.11 is required (Glue 5.0 runs 3.11). Install it, or run: make PYTHON=/path/to/python3.11" >&2
    exit 1
  fi
fi

java_major=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1 || true)
if [ -z "$java_major" ] || [ "$java_major" -lt 17 ]; then
  echo "setup: Java 17 or newer is required by Spark (found: ${java_major:-none})." >&2
  echo "       Debian/Ubuntu: sudo apt-get install openjdk-17-jre-headless; conda: see environment.yml." >&2
  exit 1
fi

jdbc_jar="${SQLITE_JDBC_JAR:-/usr/share/java/sqlite-jdbc.jar}"
if [ ! -f "$jdbc_jar" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing the SQLite JDBC driver (libxerial-sqlite-jdbc-java) for Iceberg's JdbcCatalog"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libxerial-sqlite-jdbc-java >/dev/null
  else
    echo "setup: the SQLite JDBC driver is missing at $jdbc_jar." >&2
    echo "       Install it with: sudo apt-get install libxerial-sqlite-jdbc-java" >&2
    echo "       or point SQLITE_JDBC_JAR at a sqlite-jdbc jar." >&2
    exit 1
  fi
fi

if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating $venv with $python_bin"
  "$python_bin" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r requirements.lock
# The workspace itself, editable: `import lib` from any folder (JupyterLab opens notebooks/, papermill, Spark's workers).
# No build isolation: the venv's own setuptools builds it, nothing more is fetched.
"$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
"$venv/bin/python" -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (stocks)" >/dev/null
echo "setup: $venv is ready"
