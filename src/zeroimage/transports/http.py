"""The HTTP client library, imported on first use and lean.

``httpx`` here is the real module to type checkers and, at run time, a stand-in that imports it
the first time one of its names is used (``import`` is thread-safe, so any thread may be first).
A push therefore starts compressing before the HTTP stack is loaded: the upload thread loads it
while the layer compresses.

httpx imports its own command-line tool (and with it rich's console and pygments) whenever
click is installed, as it is here; zeroimage never uses that tool. A stub for ``httpx._main``
keeps it out, which matters for start-up-bound work such as an unchanged re-push.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any


def _load() -> types.ModuleType:
    if "httpx" not in sys.modules and "httpx._main" not in sys.modules:
        stub = types.ModuleType("httpx._main")

        def _main() -> None:  # pragma: no cover - the CLI of httpx, deliberately absent
            raise SystemExit("the httpx command line is not available inside zeroimage")

        stub.main = _main  # type: ignore[attr-defined]
        sys.modules["httpx._main"] = stub
    import httpx

    return httpx


class _OnFirstUse:
    def __getattr__(self, name: str) -> Any:
        return getattr(_load(), name)


if TYPE_CHECKING:
    import httpx
else:
    httpx = _OnFirstUse()

__all__ = ["httpx"]
