"""`lib` as one zip: what Glue's --extra-py-files and a Spark cluster's executors import it from."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

LIB_DIR = Path(__file__).resolve().parents[1]  # lib/, this module being lib/storage/package.py


def package_lib(lib_dir: Path = LIB_DIR) -> bytes:
    """`lib` as a zip; byte-identical for identical sources (fixed timestamps)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(lib_dir.rglob("*")):
            if path.is_dir() or "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo"):
                continue
            info = zipfile.ZipInfo(str(Path("lib") / path.relative_to(lib_dir)), date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def package_name(package: bytes) -> str:
    """Content-addressed, so a run that started with an older `lib` keeps reading it."""
    return f"lib-{hashlib.sha256(package).hexdigest()[:12]}.zip"
