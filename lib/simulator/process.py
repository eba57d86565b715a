"""Run the simulator in a child process and hand back its URL: for notebooks, tests and the batch runner."""

from __future__ import annotations

import atexit
import collections
import os
import queue
import subprocess
import sys
import threading

from lib.core.paths import WORKSPACE

URL_PREFIX = "simulator listening on "


class SimulatorError(RuntimeError):
    """The simulator process did not come up, or died."""


class SimulatorProcess:
    """`with SimulatorProcess(tickers=30) as sim: sim.base_url` — a server in its own process, stopped on exit.

    api_key: when given, the server accepts only this key (it is passed as $MASSIVE_API_KEY to the child);
    when None, the child accepts any non-empty key. Extra keyword options become CLI flags
    (fault_rate=0.2 -> --fault-rate 0.2; lists and sets are comma-joined).
    """

    def __init__(self, tickers: int = 300, latency_ms: float = 0, seed: int = 42, api_key: str | None = None,
                 extra_args: tuple | list = (), host: str = "127.0.0.1", startup_timeout_s: float = 30.0, **options):
        self.tickers, self.latency_ms, self.seed = tickers, latency_ms, seed
        self.host = host
        self.startup_timeout_s = startup_timeout_s
        self._api_key = api_key
        self.args = [str(a) for a in extra_args]
        for name, value in options.items():
            if value is None or value is False:
                continue
            flag = "--" + name.replace("_", "-")
            if value is True:
                self.args.append(flag)
            else:
                if isinstance(value, (list, tuple, set, frozenset)):
                    value = ",".join(str(v) for v in value)
                self.args += [flag, str(value)]
        self.base_url: str | None = None
        self._process: subprocess.Popen | None = None
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=40)

    def __repr__(self) -> str:
        return f"SimulatorProcess(tickers={self.tickers}, seed={self.seed}, base_url={self.base_url!r})"

    @property
    def command(self) -> list[str]:
        return [sys.executable, "-m", "lib.simulator", "--host", self.host, "--port", "0",
                "--tickers", str(self.tickers), "--latency-ms", str(self.latency_ms), "--seed", str(self.seed), *self.args]

    @property
    def stream_url(self) -> str | None:
        """The websocket feed (Massive's real-time protocol): ws://host:port/stocks."""
        return None if self.base_url is None else "ws" + self.base_url[len("http"):] + "/stocks"

    def start(self) -> SimulatorProcess:
        if self._process is not None:
            return self
        env = dict(os.environ)
        for name in ("MASSIVE_API_KEY", "POLYGON_API_KEY"):  # the child reads either; only ours may reach it
            env.pop(name, None)
        if self._api_key:
            env["MASSIVE_API_KEY"] = self._api_key
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(WORKSPACE), env.get("PYTHONPATH", "")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        self._process = subprocess.Popen(
            self.command, cwd=WORKSPACE, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
        )
        atexit.register(self.stop)
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(self._process.stdout, lines), daemon=True).start()
        threading.Thread(target=self._pump, args=(self._process.stderr, None), daemon=True).start()
        try:
            line = lines.get(timeout=self.startup_timeout_s)
        except queue.Empty:
            self.stop()
            raise SimulatorError(
                f"the simulator did not report its URL within {self.startup_timeout_s:.0f}s; stderr:\n{self.stderr_tail}"
            ) from None
        if line is None or not line.startswith(URL_PREFIX):
            self._process.wait(timeout=5) if line is None else None
            code = self._process.poll()
            self.stop()
            raise SimulatorError(
                f"the simulator exited (code {code}) before it listened; command: {' '.join(self.command)}\n"
                f"stderr:\n{self.stderr_tail}"
            )
        self.base_url = line[len(URL_PREFIX):].strip()
        return self

    def _pump(self, stream, lines: queue.Queue | None) -> None:
        for line in stream:
            if lines is not None:
                lines.put(line)
            else:
                self._stderr_tail.append(line.rstrip("\n"))
        if lines is not None:
            lines.put(None)

    @property
    def stderr_tail(self) -> str:
        return "\n".join(self._stderr_tail)

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def check(self) -> None:
        """Raise SimulatorError with the stderr tail when the process has died."""
        if self._process is not None and self._process.poll() is not None:
            raise SimulatorError(f"the simulator died (code {self._process.returncode}); stderr:\n{self.stderr_tail}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        atexit.unregister(self.stop)
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)

    def __enter__(self) -> SimulatorProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def start_simulator(**kwargs) -> SimulatorProcess:
    """Start a simulator process; call .stop() (or rely on exit) to end it."""
    return SimulatorProcess(**kwargs).start()
