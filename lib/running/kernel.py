"""One Jupyter kernel for the notebooks of a run, so a run pays for one kernel, one JVM and one Spark session.

papermill starts a kernel per notebook, and with it a JVM and a Spark session: for a day of the market that is
most of a run's time. `SharedKernel` starts one kernel and papermill executes each notebook in it (the engine
registered here as "lib-shared-kernel"), each still saved as its own executed notebook. Before each notebook the
kernel is made to look fresh: its user namespace is cleared (`%reset -f`), its cell counter starts at 1 again, and
the per-process caches of lib are dropped. The imported modules and the Spark session stay: that is the point.
A notebook that fails, or a kernel that dies, ends the kernel; the next notebook gets a new one.
"""

from __future__ import annotations

import logging
from pathlib import Path

from jupyter_client.blocking import BlockingKernelClient
from jupyter_client.manager import AsyncKernelManager
from nbclient.util import run_sync
from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine, papermill_engines

ENGINE_NAME = "lib-shared-kernel"
START_TIMEOUT_S = 60
# What runs in the kernel before each notebook: an empty namespace and a new history session, so cells count from
# [1] again (IPython's reset(new_session=True)), and lib's caches of what other processes may change (branches)
# dropped, as a new kernel would have them.
_FRESH = """\
get_ipython().reset(new_session=True)
import sys as _sys
if "lib.storage.catalog" in _sys.modules:
    _sys.modules["lib.storage.catalog"].forget_branches()
del _sys
"""

logger = logging.getLogger(__name__)


class SharedKernel:
    """A python3 kernel started on first use, in `cwd`, reused by every notebook executed through `execute`."""

    def __init__(
        self,
        cwd: str | Path,
        extra_arguments: list[str] | None = None,
        kernel_name: str = "python3",
        fresh_each_notebook: bool = False,
    ):
        self.cwd = str(cwd)
        self.fresh_each_notebook = fresh_each_notebook  # a new kernel for every notebook, as papermill alone runs them
        self.extra_arguments = list(extra_arguments or [])
        self.kernel_name = kernel_name
        self.km: AsyncKernelManager | None = None

    def __enter__(self) -> SharedKernel:
        return self

    def __exit__(self, *exc_info) -> None:
        self.shutdown()

    @property
    def alive(self) -> bool:
        return self.km is not None and bool(run_sync(self.km.is_alive)())

    def start(self) -> None:
        km = AsyncKernelManager(kernel_name=self.kernel_name)
        # As nbclient starts a kernel: its input history in memory, not in the user's ~/.ipython.
        history = [] if any(a.startswith("--HistoryManager.hist_file") for a in self.extra_arguments) else [
            "--HistoryManager.hist_file=:memory:"
        ]
        run_sync(km.start_kernel)(extra_arguments=[*self.extra_arguments, *history], cwd=self.cwd)
        self.km = km

    def shutdown(self) -> None:
        if self.km is None:
            return
        km, self.km = self.km, None
        try:
            if run_sync(km.is_alive)():
                run_sync(km.shutdown_kernel)(now=False)
        except RuntimeError as exc:  # already gone
            logger.debug("kernel shutdown: %s", exc)
        finally:
            run_sync(km.cleanup_resources)()

    def fresh(self) -> None:
        """A live kernel with an empty namespace: started now, or the running one cleared."""
        if self.fresh_each_notebook or not self.alive:
            self.shutdown()
            self.start()
            return
        client = BlockingKernelClient()
        client.load_connection_info(self.km.get_connection_info())
        client.start_channels()
        try:
            client.wait_for_ready(timeout=START_TIMEOUT_S)
            reply = client.execute_interactive(
                _FRESH, silent=True, store_history=False, timeout=START_TIMEOUT_S, output_hook=lambda msg: None
            )
        finally:
            client.stop_channels()
        if reply["content"]["status"] != "ok":  # the kernel is not in a state to trust: a new one
            logger.warning("kernel reset failed (%s): starting a new kernel", reply["content"].get("ename"))
            self.shutdown()
            self.start()

    def execute(self, source: str | Path, output: str | Path, parameters: dict, **papermill_kwargs):
        """papermill.execute_notebook in this kernel; a notebook that raises leaves no kernel behind it."""
        import papermill

        self.fresh()
        try:
            notebook = papermill.execute_notebook(
                str(source),
                str(output),
                parameters=parameters,
                cwd=self.cwd,
                kernel_name=self.kernel_name,
                engine_name=ENGINE_NAME,
                km=self.km,
                **papermill_kwargs,
            )
        except BaseException:
            self.shutdown()  # a failed cell may have left anything behind it (a stopped session, half a state)
            raise
        return notebook


class SharedKernelEngine(NBClientEngine):
    """papermill's nbclient engine, on a kernel it is given (`km`): the kernel outlives the notebook."""

    @classmethod
    def execute_managed_notebook(
        cls,
        nb_man,
        kernel_name,
        log_output=False,
        stdout_file=None,
        stderr_file=None,
        start_timeout=START_TIMEOUT_S,
        execution_timeout=None,
        km=None,
        **kwargs,
    ):
        if km is None:
            raise ValueError(f"the {ENGINE_NAME} engine runs notebooks in a kernel it is given: pass km")
        for unused in ("input_path", "timeout", "startup_timeout", "extra_arguments"):  # the kernel is already up
            kwargs.pop(unused, None)
        client = PapermillNotebookClient(
            nb_man,
            km=km,
            timeout=execution_timeout,
            startup_timeout=start_timeout,
            kernel_name=kernel_name,
            log=logging.getLogger("papermill"),
            log_output=log_output,
            stdout_file=stdout_file,
            stderr_file=stderr_file,
            **kwargs,
        )
        try:
            return client.execute()
        finally:
            if client.kc is not None:  # the kernel stays; this notebook's channels to it do not
                client.kc.stop_channels()
                client.kc = None


papermill_engines.register(ENGINE_NAME, SharedKernelEngine)
