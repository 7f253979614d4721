"""The HTTP client library, imported once and lean.

httpx imports its own command-line tool (and with it rich's console and pygments, ~80 ms) whenever
click is installed, as it is here; zeroimage never uses that tool. A stub for ``httpx._main``
keeps it out, which matters for start-up-bound work such as an unchanged re-push.
"""

from __future__ import annotations

import sys
import types

if "httpx" not in sys.modules and "httpx._main" not in sys.modules:
    _stub = types.ModuleType("httpx._main")

    def _main() -> None:  # pragma: no cover - the CLI of httpx, deliberately absent
        raise SystemExit("the httpx command line is not available inside zeroimage")

    _stub.main = _main  # type: ignore[attr-defined]
    sys.modules["httpx._main"] = _stub

import httpx  # noqa: E402

__all__ = ["httpx"]
