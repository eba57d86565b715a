# The workspace's commands. `make run` and `make test` set everything up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PARAMS ?= params/local.yaml

.PHONY: setup run test test-fast lab dashboard stream bench lint clean-runs cluster cluster-stop

$(STAMP): requirements.lock pyproject.toml scripts/setup.sh
	@bash scripts/setup.sh "$(PYTHON)" "$(VENV)"
	@touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(PY) -m lib.run -f $(PARAMS) $(RUN_ARGS)

# Two pytest-xdist workers, a test file to each (its module fixtures built once), in the order tests/conftest.py sets
# (slowest first; xdist would otherwise start with the files of most tests); PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= 2
# The tests' Spark drivers are short-lived JVMs on small data, where the JIT's optimizing compiler costs more CPU than it
# saves: C1 only, and the serial collector (a tiny pipeline run: 28 % less CPU, the same wall time alone; the suite is
# CPU-bound on two cores). `make run` keeps the JVM's defaults, which suit long runs over the whole market.
TEST_JAVA_OPTS ?= -XX:TieredStopAtLevel=1 -XX:+UseSerialGC
test: $(STAMP)
	SPARK_SUBMIT_OPTS="$(TEST_JAVA_OPTS) $$SPARK_SUBMIT_OPTS" $(PY) -m pytest $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder) $(PYTEST_ARGS)

test-fast: $(STAMP)
	SPARK_SUBMIT_OPTS="$(TEST_JAVA_OPTS) $$SPARK_SUBMIT_OPTS" $(PY) -m pytest -m "not e2e and not glue and not notebooks" $(PYTEST_ARGS)

# LAB_ARGS passes options to JupyterLab, e.g. make lab LAB_ARGS="--port 8899 --no-browser"; LAB_DIR another folder.
LAB_DIR ?= notebooks
lab: $(STAMP)
	@bash scripts/lab.sh "$(VENV)" "$(LAB_DIR)" $(LAB_ARGS)

# A Spark standalone cluster on loopback (a master, two one-core workers): run steps on it with -p spark_master.
cluster: $(STAMP)
	@bash scripts/cluster.sh start

cluster-stop:
	@bash scripts/cluster.sh stop

# The dashboard over the warehouse on 127.0.0.1; DASHBOARD_ARGS passes options, e.g. make dashboard DASHBOARD_ARGS="--port 8051 -p warehouse /tmp/wh".
dashboard: $(STAMP)
	$(PY) -m lib.dashboard -f $(PARAMS) $(DASHBOARD_ARGS)

# A simulated day's minute bars into minute_bars: lib.stream starts the simulator, whose websocket feed plays the session
# of ds (390 minutes, STREAM_SPEED a second) with two dropped connections, duplicates and corrections, and stops after it.
# STREAM_ARGS passes more, e.g. make stream STREAM_ARGS="-p ds 2024-03-28 --symbols AM.AAPL,AM.MSFT".
STREAM_SPEED ?= 30
STREAM_FAULTS ?= "feed_drops": "120,260", "feed_duplicate_rate": 0.01, "feed_correct_rate": 0.01
stream: $(STAMP)
	$(PY) -m lib.stream -f $(PARAMS) -p simulator_options '{"feed_minutes_per_second": $(STREAM_SPEED), $(STREAM_FAULTS)}' \
		--for-seconds $$(( 390 / $(STREAM_SPEED) + 30 )) $(STREAM_ARGS)

bench: $(STAMP)
	$(PY) -m benchmarks $(BENCH_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check lib tests benchmarks
