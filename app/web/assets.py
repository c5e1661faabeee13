"""Third-party browser assets, served from the pinned packages that ship them (no CDN)."""

from __future__ import annotations

import gzip
from functools import cache
from importlib.util import find_spec
from pathlib import Path


def _package_dir(package: str, sub: str) -> Path:
    spec = find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"package {package} is not installed; run `make install`")
    return Path(next(iter(spec.submodule_search_locations))) / sub


# name -> folder; served at /assets/<name>/...
FOLDERS = {
    "docs": _package_dir("fastapi_offline", "static"),  # Swagger UI and ReDoc bundles
    "plotly": _package_dir("plotly", "package_data"),  # plotly.min.js
}


def url(name: str, filename: str) -> str:
    """Return the URL of an asset file (`asset('plotly', 'plotly.min.js')` in templates)."""
    if name == "static":
        return f"/static/{filename}"
    return f"/assets/{name}/{filename}"


# ReDoc's side menu loads its logo from the vendor's CDN, unconditionally: offline that is a
# failed request and a console error. Served with the logo pointed at our own favicon.
REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"


@cache
def redoc_js() -> tuple[bytes, bytes]:
    """Return ReDoc's bundle with its one external URL made local, plain and gzipped."""
    raw = (FOLDERS["docs"] / "redoc.standalone.js").read_bytes()
    patched = raw.replace(REDOC_LOGO, b"/static/favicon.svg")
    return patched, gzip.compress(patched, 6)
