"""The notebooks as a person opens them: `make lab` in a fresh workspace, each notebook run in headless Chromium.

JupyterLab runs on loopback (started by `make lab` itself, as root or not), Playwright drives Debian's chromium
through the menus a person clicks (Run > Run All Cells), and the test reads what the page shows: the rendered
figures, and the notebook as JupyterLab saves it (no error output). Screenshots go to test-artifacts/lab/.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts" / "lab"
# Figure cells of each notebook: the pictures a person must see after Run All Cells.
FIGURES = {"01_ingest": 1, "02_monthly_rollup": 1, "03_quality": 3, "04_trends": 9, "05_forecast": 2}
TOKEN = "lab-test-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A fresh copy of the workspace as a new user has it: the notebooks and params, the project's lib."""
    root = tmp_path_factory.mktemp("lab-workspace")
    shutil.copytree(REPO / "notebooks", root / "notebooks")
    shutil.copytree(REPO / "params", root / "params")
    (root / "lib").symlink_to(REPO / "lib")
    return root


@pytest.fixture(scope="module")
def lab(workspace, tmp_path_factory):
    """`make lab` on the fresh workspace's notebooks; yields its base URL, stopped at the end."""
    port = free_port()
    state = tmp_path_factory.mktemp("lab-state")
    env = {k: v for k, v in os.environ.items() if k not in ("POLYGON_API_KEY", "MASSIVE_API_KEY")}
    env.update(JUPYTER_CONFIG_DIR=str(state / "config"), JUPYTER_RUNTIME_DIR=str(state / "runtime"))
    settings = state / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')  # no "news?" toast
    lab_args = (
        f"--no-browser --port={port} --ServerApp.token={TOKEN} --LabApp.workspaces_dir={state / 'workspaces'} "
        f"--LabApp.user_settings_dir={state / 'settings'}"
    )
    log = (state / "lab.log").open("w")
    server = subprocess.Popen(
        ["make", "-s", "lab", f"LAB_DIR={workspace / 'notebooks'}", f"LAB_ARGS={lab_args}"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if requests.get(f"{base}/api/status", params={"token": TOKEN}, timeout=2).ok:
                break
        except requests.ConnectionError:
            pass
        assert server.poll() is None, (state / "lab.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "JupyterLab did not answer within 120 s"
        time.sleep(0.5)
    yield {"base": base, "log": state / "lab.log"}
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
    log.close()


@pytest.fixture(scope="module")
def browser(chromium):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


def shut_down_kernels(base: str) -> None:
    """One notebook's Spark at a time: end every kernel session the page started."""
    for session in requests.get(f"{base}/api/sessions", params={"token": TOKEN}, timeout=10).json():
        requests.delete(f"{base}/api/sessions/{session['id']}", params={"token": TOKEN}, timeout=30)


PROMPTS = "() => [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')].map(p => p.textContent)"


def run_all_cells(page, name: str, timeout_s: float = 900) -> None:
    """Open the notebook on the project's kernel, Run > Run All Cells, wait until no cell is running or waiting."""
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)
    kernel = page.locator(".jp-KernelName")
    deadline = time.monotonic() + 60
    # JupyterLab asks for a kernel when the notebook opens before it has listed the kernels: take the one it offers.
    while "Python 3 (stocks)" not in (kernel.first.inner_text() if kernel.count() else ""):
        if page.locator(".jp-Dialog .jp-mod-accept").count():
            page.locator(".jp-Dialog .jp-mod-accept").click()
        assert time.monotonic() < deadline, f"{name}: not on the project's kernel: {kernel.all_inner_texts()}"
        time.sleep(0.5)
    idle = page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")
    idle.wait_for(timeout=120_000)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    deadline = time.monotonic() + timeout_s
    while True:
        prompts = page.evaluate(PROMPTS)
        if prompts[0].strip("[]: ").isdigit() and not any("*" in p for p in prompts) and idle.count():
            return
        assert time.monotonic() < deadline, f"{name}: cells still running after {timeout_s:.0f} s: {prompts}"
        time.sleep(1)


def saved_outputs(page, path: Path) -> list[dict]:
    """Save from the page (Ctrl+S) and read the outputs JupyterLab wrote."""
    before = path.stat().st_mtime_ns
    page.locator(".jp-Notebook").first.click(position={"x": 5, "y": 5})
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 30
    while True:
        if path.stat().st_mtime_ns != before:
            try:
                cells = json.loads(path.read_text())["cells"]
                break
            except ValueError:  # the save has begun and not ended: JupyterLab is still writing the file
                pass
        assert time.monotonic() < deadline, f"{path.name} was not saved"
        time.sleep(0.2)
    return [output for cell in cells if cell["cell_type"] == "code" for output in cell["outputs"]]


def test_each_notebook_runs_in_jupyterlab_and_shows_its_figures(lab, browser, workspace):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    try:
        for name, figures in FIGURES.items():
            page.goto(f"{lab['base']}/lab/tree/{name}.ipynb?token={TOKEN}&reset")
            try:
                run_all_cells(page, name)
            except Exception:
                page.screenshot(path=str(ARTIFACTS / f"{name}_failed.png"))
                raise
            outputs = saved_outputs(page, workspace / "notebooks" / f"{name}.ipynb")
            errors = [f"{o['ename']}: {o['evalue']}" for o in outputs if o["output_type"] == "error"]
            assert not errors, f"{name}: error output in JupyterLab: {errors}"
            rendered = page.locator(".jp-OutputArea-output.jp-RenderedImage img")
            drawn = page.evaluate(
                "() => [...document.querySelectorAll('.jp-RenderedImage img')]"
                ".filter(i => i.complete && i.naturalWidth > 300 && i.naturalHeight > 200).length"
            )
            pictures = [o for o in outputs if "image/png" in o.get("data", {})]
            for which, figure in (("first", rendered.first), ("last", rendered.last)):
                figure.scroll_into_view_if_needed()
                page.screenshot(path=str(ARTIFACTS / f"{name}_{which}_figure.png"))
            assert rendered.count() >= figures and drawn >= figures, f"{name}: {drawn} figures drawn, want {figures}"
            assert len(pictures) >= figures, f"{name}: {len(pictures)} image/png outputs saved, want {figures}"
            assert not page.get_by_text("<Figure size").count(), f"{name}: a figure shown as its repr"
            shut_down_kernels(lab["base"])
    finally:
        context.close()
    assert (workspace / "warehouse" / "catalog.db").is_file(), "the notebooks did not write the fresh workspace's warehouse"
    figures_dir = next((workspace / "runs").glob("*/figures"))
    assert len(list(figures_dir.glob("*.png"))) >= sum(FIGURES.values())


def test_make_lab_prints_the_address_and_runs_as_root_or_user(lab):
    log = lab["log"].read_text()
    assert "http://127.0.0.1:" in log and "/lab" in log, log[-2000:]
    assert "Running as root is not recommended" not in log
