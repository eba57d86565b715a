"""The batch runner: per-day runs (skip, --force, resume), run records, the HTML reports in headless Chromium.

Skip and resume run tiny fixture notebooks (no Spark, tests/fixtures/notebooks); the end-to-end class runs the
real 01_ingest and 02_monthly_rollup six times in all, per day and as one range, and compares the tables.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from lib.presentation import report
from lib.running import runner as run

REPO = Path(__file__).resolve().parent.parent
FIXTURE_NOTEBOOKS = REPO / "tests" / "fixtures" / "notebooks"
FRIDAY, MONDAY, TUESDAY, WEDNESDAY = "2024-03-01", "2024-03-04", "2024-03-05", "2024-03-06"


def run_fixtures(capsys, runs_root: Path, start: str, ds: str, *extra: str) -> tuple[int, str]:
    """The runner over the fixture notebooks, in-process; returns its exit code and what it printed."""
    code = run.main(
        [
            "--per-day",
            "--start-ds",
            start,
            "--ds",
            ds,
            "--runs-root",
            str(runs_root),
            "--notebooks-dir",
            str(FIXTURE_NOTEBOOKS),
            *extra,
        ]
    )
    return code, capsys.readouterr().out


def record(runs_root: Path, ds: str) -> dict:
    return json.loads((runs_root / ds / "run.json").read_text())


def mtime(path: Path) -> int:
    return path.stat().st_mtime_ns


def test_per_day_runs_each_market_day_skips_complete_days_and_force_reruns(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("FIXTURE_FAIL", raising=False)
    runs_root = tmp_path / "runs"

    code, out = run_fixtures(capsys, runs_root, FRIDAY, MONDAY)
    assert code == 0, out
    assert "2024-03-02 (Saturday): not a NYSE trading day, skipped" in out
    assert "2024-03-03 (Sunday): not a NYSE trading day, skipped" in out
    assert "2 day(s) done, 0 skipped (record complete), 2 not trading day(s), 0 failed" in out
    assert sorted(p.name for p in runs_root.iterdir() if p.is_dir()) == [FRIDAY, MONDAY]
    monday = record(runs_root, MONDAY)
    assert monday["status"] == "ok" and monday["mode"] == "per-day"
    assert monday["parameters"]["ds"] == monday["parameters"]["start_ds"] == MONDAY
    assert [(n["notebook"], n["status"]) for n in monday["notebooks"]] == [("01_tiny", "ok"), ("02_tiny", "ok")]
    assert monday["figures"] == ["01_tiny.png", "02_tiny.png"]
    assert {"python", "pyspark", "pyiceberg", "iceberg"} <= set(monday["versions"])
    assert "01_tiny ran for 2024-03-04" in (runs_root / MONDAY / "index.html").read_text()
    listing = (runs_root / "index.html").read_text()
    assert listing.index(f'href="{MONDAY}/index.html"') < listing.index(f'href="{FRIDAY}/index.html"')  # newest first

    executed = runs_root / MONDAY / "01_tiny.ipynb"
    before = mtime(executed)
    code, out = run_fixtures(capsys, runs_root, FRIDAY, MONDAY)
    assert code == 0, out
    assert f"{MONDAY}: record complete in {runs_root / MONDAY}, skipped" in out
    assert "0 day(s) done, 2 skipped (record complete)" in out
    assert mtime(executed) == before

    code, out = run_fixtures(capsys, runs_root, MONDAY, MONDAY, "--force", "--notebooks", "01_tiny")
    assert code == 0, out
    assert "1 day(s) done, 0 skipped" in out
    assert mtime(executed) > before


def test_a_failed_day_stops_the_batch_and_the_next_run_resumes_from_it(tmp_path, capsys, monkeypatch):
    runs_root = tmp_path / "runs"
    monkeypatch.setenv("FIXTURE_FAIL", f"{TUESDAY}:02_tiny")  # the fixture notebook raises for that ds

    code, out = run_fixtures(capsys, runs_root, MONDAY, WEDNESDAY)
    assert code == 1, out
    assert "FAILED: 1 day(s) done, 0 skipped (record complete), 0 not trading day(s), 1 failed, 1 not run" in out
    assert f"failed: {TUESDAY} (02_tiny: RuntimeError: injected failure for {TUESDAY} in 02_tiny)" in out
    assert f"not run: {WEDNESDAY}..{WEDNESDAY}" in out
    tuesday = record(runs_root, TUESDAY)
    assert tuesday["status"] == "failed"
    assert [(n["notebook"], n["status"]) for n in tuesday["notebooks"]] == [("01_tiny", "ok"), ("02_tiny", "failed")]
    assert "injected failure" in (runs_root / TUESDAY / "index.html").read_text()
    assert not (runs_root / WEDNESDAY).exists()
    assert ">failed</span>" in (runs_root / "index.html").read_text()

    first_notebook = runs_root / TUESDAY / "01_tiny.ipynb"
    before = mtime(first_notebook)
    monkeypatch.delenv("FIXTURE_FAIL")
    code, out = run_fixtures(capsys, runs_root, MONDAY, WEDNESDAY)
    assert code == 0, out
    assert f"{MONDAY}: record complete" in out
    assert f"{TUESDAY}: resuming after 01_tiny" in out
    assert "2 day(s) done, 1 skipped (record complete)" in out
    assert mtime(first_notebook) == before  # the notebook that had succeeded is kept, not re-run
    assert record(runs_root, TUESDAY)["status"] == record(runs_root, WEDNESDAY)["status"] == "ok"


def _kernel_notebooks(folder: Path) -> Path:
    """Two notebooks that print their kernel's pid; the second fails when the first one's variable is still there."""
    import nbformat

    folder.mkdir()
    parameters = nbformat.v4.new_code_cell('ds = "2024-03-01"\nstart_ds = ""\nrun_dir = ""', metadata={"tags": ["parameters"]})
    for name, body in (
        ("01_a", 'import os\nleft_by_01 = ds\nprint("pid", os.getpid())'),
        ("02_b", 'import os\nprint("pid", os.getpid())\nassert "left_by_01" not in globals(), "the namespace of 01_a"'),
    ):
        notebook = nbformat.v4.new_notebook(cells=[parameters, nbformat.v4.new_code_cell(body)])
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(notebook, folder / f"{name}.ipynb")
    return folder


def _pids_and_counts(run_dir: Path) -> list[tuple[int, list[int]]]:
    """(the pid the notebook printed, its cells' execution counts) for each executed notebook of a run, in order."""
    import nbformat

    found = []
    for path in sorted(run_dir.glob("0*.ipynb")):
        cells = [c for c in nbformat.read(path, 4).cells if c.cell_type == "code"]
        text = "".join(o.get("text", "") for c in cells for o in c.outputs)
        assert re.fullmatch(r"pid \d+\n", text), text  # and nothing else: no notice of IPython's history, no error
        found.append((int(text.split()[1]), [c.execution_count for c in cells]))
    return found


@pytest.mark.parametrize("per_notebook", [False, True], ids=["shared", "kernel-per-notebook"])
def test_the_notebooks_of_a_run_share_one_kernel_with_a_clean_namespace(tmp_path, capsys, per_notebook):
    """Every notebook of a per-day batch runs in one kernel (one JVM, one Spark session for real notebooks), each
    in an empty namespace, its cells counted from 1; --kernel-per-notebook gives each its own, as papermill does."""
    runs_root = tmp_path / "runs"
    code = run.main(
        ["--per-day", "--start-ds", MONDAY, "--ds", TUESDAY, "--runs-root", str(runs_root),
         "--notebooks-dir", str(_kernel_notebooks(tmp_path / "nb")), *(["--kernel-per-notebook"] if per_notebook else [])]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    found = [f for day in (MONDAY, TUESDAY) for f in _pids_and_counts(runs_root / day)]
    assert len(found) == 4
    assert all(counts == list(range(1, len(counts) + 1)) for _, counts in found), found
    pids = {pid for pid, _ in found}
    assert len(pids) == (4 if per_notebook else 1), found
    assert os.getpid() not in pids


def test_a_failed_notebook_leaves_no_kernel_behind(tmp_path):
    """After a cell raises, the shared kernel is shut down and the next notebook gets a new one."""
    import papermill

    from lib.running.kernel import SharedKernel

    folder = _kernel_notebooks(tmp_path / "nb")
    with SharedKernel(REPO) as kernel:
        kernel.execute(folder / "01_a.ipynb", tmp_path / "a1.ipynb", {"ds": MONDAY})
        first = kernel.km.provisioner.process.pid
        with pytest.raises(papermill.PapermillExecutionError, match="the namespace of 01_a"):
            # the same kernel without the reset: 01_a's variable is there and 02_b fails on it
            kernel.fresh_each_notebook = False
            kernel.fresh = lambda: None
            kernel.execute(folder / "02_b.ipynb", tmp_path / "b1.ipynb", {"ds": MONDAY})
        assert kernel.km is None
        del kernel.fresh  # the class's reset again
        kernel.execute(folder / "02_b.ipynb", tmp_path / "b2.ipynb", {"ds": MONDAY})
        assert kernel.km.provisioner.process.pid != first
    assert kernel.km is None


def test_a_range_too_big_for_the_disk_is_refused_before_any_work(tmp_path, capsys):
    """Twenty years of a 100,000-ticker universe (500 million bars) does not fit this disk: exit 2 at once, a
    message that says how to split it, no warehouse, no record."""
    warehouse = tmp_path / "wh"
    code = run.main(["--start-ds", "2006-01-03", "--ds", "2025-12-31", "-p", "simulator_tickers", "100000",
                     "-p", "warehouse", str(warehouse), "--runs-root", str(tmp_path / "runs")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err
    assert "about 503,100,000 bars" in err and "GiB of disk" in err and "split it into" in err, err
    assert not warehouse.exists() and not (tmp_path / "runs").exists()


def test_check_room_splits_the_span_into_runs_that_fit():
    from lib.core.errors import ConfigError
    from lib.settings.config import RunConfig

    config = RunConfig(ds=dt.date(2025, 12, 31), start_ds=dt.date(2025, 1, 2), simulator_tickers=11_000)
    need = run.range_bars(config) * run.BYTES_PER_BAR
    assert run.range_bars(config) == 11_000 * 250
    run.check_room(config, free_bytes=need)  # just fits
    with pytest.raises(ConfigError, match=r"split it into 4 range runs of at most 83 market days, oldest first, "
                                          r"e\.g\. python -m lib\.run --start-ds 2025-01-02 --ds 2025-05-02"):  # fmt: skip
        run.check_room(config, free_bytes=need // 3)


def test_per_day_refuses_a_run_dir_and_force_needs_per_day(tmp_path):
    with pytest.raises(SystemExit, match="--per-day writes one record per day"):
        run.main(["--per-day", "--ds", MONDAY, "-p", "run_dir", str(tmp_path / "x")])
    with pytest.raises(SystemExit):
        run.main(["--force", "--ds", MONDAY])


def test_recorded_parameters_drop_secrets_and_url_queries():
    public = run.public_parameters(
        {
            "ds": MONDAY,
            "api_key": "k",
            "db_password": "p",
            "api_base_url": "https://api.example.com/v2?apiKey=k",
            "api_key_secret_id": "stocks/polygon",
        }
    )
    assert public == {"ds": MONDAY, "api_base_url": "https://api.example.com/v2", "api_key_secret_id": "stocks/polygon"}


def test_quality_line_tells_warnings_from_errors():
    from lib.running.runner import quality_line

    def check(name, severity, status, rows=0):
        return {"check_name": name, "table_name": "stock_prices", "severity": severity, "status": status,
                "failed_rows": rows, "details": ""}  # fmt: skip

    warned = {"checks_run": 3, "checks": [check("outliers", "warn", "fail", 5), check("duplicates", "error", "pass"),
                                          check("null_values", "error", "pass")]}  # fmt: skip
    assert quality_line(warned) == "3 checks: 2 passed, 1 warning (outliers on stock_prices: 5 rows), 0 errors"
    failed = {"checks_run": 2, "checks": [check("duplicates", "error", "fail", 1200), check("nulls", "error", "fail", 2)]}
    assert quality_line(failed) == (
        "2 checks: 0 passed, 0 warnings, 2 errors (duplicates on stock_prices: 1,200 rows, nulls on stock_prices: 2 rows)"
    )


def test_run_report_puts_failed_quality_checks_first(tmp_path):
    checks = [
        {
            "check_name": "duplicates",
            "table_name": "stock_prices",
            "severity": "error",
            "status": "pass",
            "failed_rows": 0,
            "details": "",
        },
        {
            "check_name": "ohlc_consistency",
            "table_name": "stock_prices",
            "severity": "error",
            "status": "fail",
            "failed_rows": 3,
            "details": "high < low",
        },
    ]
    rec = {
        "status": "failed",
        "mode": "range",
        "parameters": {"ds": MONDAY, "start_ds": FRIDAY},
        "seconds": 1.0,
        "notebooks": [{"notebook": "03_quality", "status": "failed", "seconds": 1.0, "error": "QualityGateError: x"}],
        "quality": {"checks_run": 2, "failed": 1, "failed_errors": 1, "checks": checks},
    }
    page = report.write_run_report(tmp_path, rec).read_text()
    assert "Run 2024-03-01 .. 2024-03-04" in page
    assert "2 checks, 1 failed (1 error-severity)" in page
    assert page.index("ohlc_consistency") < page.index("duplicates")
    assert '<tr class="fail"><td>ohlc_consistency</td>' in page
    assert page.index("<h2>Quality</h2>") < page.index("<h2>Notebooks</h2>")


def test_run_report_and_index_escape_every_value(tmp_path):
    """Text from the API, the warehouse or an exception lands in the reports: none of it may become markup."""
    hostile = '"><script>alert(1)</script><img src=x onerror=alert(2)>'
    checks = [{"check_name": hostile, "table_name": hostile, "severity": "error", "status": "fail", "failed_rows": 1234,
               "details": hostile}]  # fmt: skip
    rec = {
        "status": hostile, "mode": hostile, "market_days": hostile, "finished_at": hostile, "seconds": 2.0,
        "parameters": {"ds": MONDAY, "start_ds": hostile},
        "notebooks": [{"notebook": hostile, "status": "failed", "seconds": 1.0, "error": hostile}],
        "quality": {"checks_run": 1, "failed": 1, "failed_errors": 1, "checks": checks},
        "tables": {hostile: {"run_rows": 5, "total_rows": 1_000_000}}, "calls": {"total": 7, "strategy": hostile},
        "figures": [f"01_{hostile}.png"], "versions": {hostile: hostile},
    }  # fmt: skip
    run_dir = tmp_path / MONDAY
    run_dir.mkdir()
    page = report.write_run_report(run_dir, rec).read_text()
    (run_dir / "run.json").write_text(json.dumps(rec))
    listing = report.write_runs_index(tmp_path).read_text()
    for html in (page, listing):
        assert "<script>" not in html and "<img src=x" not in html and 'alt=""><' not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert page.count("&lt;script&gt;alert(1)") >= 12  # every spot: title, heading, meta, quality, notebooks, tables, ...
    assert '<td class="num">1,234</td>' in page and '<td class="num">1,000,000</td>' in page
    assert '<img src="figures/01_&#34;&gt;&lt;script&gt;' in page  # inside an attribute, quotes escaped too
    assert f'<a href="{MONDAY}/index.html">{MONDAY}</a>' in listing


# --- real notebooks, per day against one range, and the report in a browser -------------------------------------------

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
IMAGES_PROBE = (
    "<script>window.addEventListener('load', () => { const images = [...document.images];"
    " document.body.dataset.imagesTotal = images.length;"
    " document.body.dataset.imagesLoaded = images.filter(i => i.complete && i.naturalWidth > 0).length; });</script>"
)


def browse(chromium: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"
    command = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


def run_real(warehouse: Path, runs_root: Path, *mode: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "POLYGON_API_KEY"}
    command = [
        str(REPO / ".venv" / "bin" / "python"),
        "-m",
        "lib.run",
        "-f",
        "params/local.yaml",
        "--start-ds",
        FRIDAY,
        "--ds",
        MONDAY,
        "--notebooks",
        "01_ingest",
        "02_monthly_rollup",
        "-p",
        "warehouse",
        str(warehouse),
        "-p",
        "simulator_tickers",
        "5",
        "--runs-root",
        str(runs_root),
        *mode,
    ]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=1500)


@pytest.mark.e2e
@pytest.mark.timeout(3600)  # six Spark notebook runs: minutes on a quiet machine, far more on a loaded one
class TestRealNotebooks:
    @pytest.fixture(scope="class")
    def runs(self, tmp_path_factory):
        root = tmp_path_factory.mktemp("batch")
        per_day = run_real(root / "per_day" / "warehouse", root / "per_day" / "runs", "--per-day")
        assert per_day.returncode == 0, per_day.stdout[-3000:] + per_day.stderr[-3000:]
        ranged = run_real(root / "range" / "warehouse", root / "range" / "runs")
        assert ranged.returncode == 0, ranged.stdout[-3000:] + ranged.stderr[-3000:]
        return {"root": root, "per_day": per_day.stdout, "range": ranged.stdout}

    def test_per_day_and_range_runs_agree_on_the_tables(self, runs):
        from pyiceberg.catalog.sql import SqlCatalog

        assert "2024-03-02 (Saturday): not a NYSE trading day, skipped" in runs["per_day"]
        frames = {}
        for mode in ("per_day", "range"):
            warehouse = runs["root"] / mode / "warehouse"
            cat = SqlCatalog("local", uri=f"sqlite:///{warehouse / 'catalog.db'}", warehouse=warehouse.as_uri())
            frames[mode] = {
                name: cat.load_table(f"stocks.{name}").scan().to_pandas() for name in ("stock_prices", "monthly_stock_prices")
            }
        for name, keys in (
            ("stock_prices", ["symbol", "date"]),
            ("monthly_stock_prices", ["symbol", "month_start", "metric_name"]),
        ):
            per_day = frames["per_day"][name].sort_values(keys).reset_index(drop=True)
            ranged = frames["range"][name].sort_values(keys).reset_index(drop=True)
            assert len(per_day) > 0 and len(per_day) == len(ranged), name
            assert per_day.astype(str).equals(ranged.astype(str)), name

    def test_range_record_holds_rows_calls_and_versions(self, runs):
        rec = json.loads((runs["root"] / "range" / "runs" / MONDAY / "run.json").read_text())
        assert rec["status"] == "ok" and rec["mode"] == "range" and rec["market_days"] == 2
        assert rec["parameters"]["start_ds"] == FRIDAY
        assert rec["tables"]["stock_prices"] == {"run_rows": 10, "total_rows": 10}  # 5 tickers x 2 market days
        assert rec["calls"]["total"] > 0 and rec["calls"]["tickers"] == 5
        assert all(n["seconds"] > 0 for n in rec["notebooks"])
        assert re.match(r"\d+\.\d+", rec["versions"]["iceberg"])

    def test_report_renders_in_headless_chromium(self, runs, chromium, tmp_path):
        from PIL import Image

        run_dir = runs["root"] / "range" / "runs" / MONDAY
        page = (run_dir / "index.html").read_text()
        assert "<h2>Quality</h2>" in page and "02_monthly_rollup" in page
        assert "def " not in page and "steps.run_ingest" not in page  # code cells are left out

        shot = tmp_path / "report.png"
        browse(chromium, tmp_path, "--window-size=1200,1800", f"--screenshot={shot}", (run_dir / "index.html").as_uri())
        image = Image.open(shot).convert("RGB")
        pixels = list(image.getdata())
        non_white = sum(1 for p in pixels if sum(p) < 720) / len(pixels)
        assert len(set(pixels)) > 200 and non_white > 0.05, (len(set(pixels)), non_white)

        probe = run_dir / "_probe.html"  # next to the report, so relative figure links resolve the same way
        probe.write_text(page.replace("</body>", IMAGES_PROBE + "</body>"))
        dom = browse(chromium, tmp_path, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()).stdout
        loaded = re.search(r'data-images-total="(\d+)" data-images-loaded="(\d+)"', dom)
        assert loaded, dom[:500]
        total, ok = int(loaded.group(1)), int(loaded.group(2))
        assert total >= 4 and ok == total  # each figure twice: a thumbnail at the top, full size under its notebook

        listing = runs["root"] / "range" / "runs" / "index.html"
        dom = browse(chromium, tmp_path, "--dump-dom", listing.as_uri()).stdout
        assert f'href="{MONDAY}/index.html"' in dom and ">ok</span>" in dom
