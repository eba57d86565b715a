"""How the workspace's objects show in a notebook: figures as PNG pictures, its own errors as one line.

`lib.presentation.plots` builds figures as plain `matplotlib.figure.Figure` objects, without pyplot, so IPython has no
formatter for them and would show their repr (`<Figure size 1100x600 with 2 Axes>`). `install()` registers
one PNG formatter for every Figure in the running IPython shell (JupyterLab, papermill, nbval, a console);
`lib.running.runtime` calls it on import, so every notebook gets it from its first cell. Outside IPython it does
nothing. No pyplot state is touched: the PNG is rendered by the figure's own canvas, as `save_figure` does.
"""

from __future__ import annotations

import io

from matplotlib.figure import Figure

from lib.core.errors import WorkspaceError

INLINE_DPI = 96  # screen resolution: the saved PNGs use plots.SAVE_DPI


def figure_png(fig: Figure, dpi: int = INLINE_DPI) -> bytes:
    """The figure rendered as PNG bytes (what a notebook's `image/png` output holds)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    return buffer.getvalue()


def figure_text(fig: Figure) -> str:
    """The plain-text fallback, named after the figure's title so a text-only reader knows what it is."""
    titles = [t for t in [fig.get_suptitle(), *(ax.get_title() for ax in fig.axes)] if t]
    return f"<figure: {titles[0]}>" if titles else "<figure>"


def _one_line_error(shell, etype, value, tb, tb_offset=None):
    """The workspace's own errors say what to do in their message: show that line, not a traceback.

    The cell still fails (papermill and nbval see the error), only its display is short.
    """
    shell.showtraceback((etype, value, tb), exception_only=True)
    return []


def install(shell=None) -> bool:
    """Register the figure formatters and the one-line errors in `shell` (default: the running one).

    Idempotent; returns False when no IPython shell is running (a plain script, a Glue job).
    """
    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return False
        shell = get_ipython()
    if shell is None:
        return False
    formatters = shell.display_formatter.formatters
    formatters["image/png"].for_type(Figure, figure_png)
    formatters["text/plain"].for_type(Figure, lambda fig, printer, cycle: printer.text(figure_text(fig)))
    shell.set_custom_exc((WorkspaceError,), _one_line_error)
    return True
