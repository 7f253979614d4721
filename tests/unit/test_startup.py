"""Start-up stays light: --help and --version load no HTTP stack, no progress UI, no compressor;
the registry transport loads httpx only when a request is made."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("httpx", "httpcore", "h11", "ssl", "rich", "isal", "zstandard")


def _imported(code: str) -> set[str]:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True)
    return {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_help_and_version_load_nothing_heavy(flag: str) -> None:
    code = "\n".join(
        [
            f"import sys; sys.argv = ['zeroimage', '{flag}']",
            "try:",
            "    import zeroimage.__main__",
            "except SystemExit:",
            "    pass",
        ]
    )
    loaded = _imported(code)
    assert "zeroimage.cli" in loaded
    assert not {m for m in loaded if m.split(".")[0] in HEAVY}


def test_registry_transport_imports_httpx_on_first_use() -> None:
    loaded = _imported("import zeroimage.transports.registry")
    assert not {m for m in loaded if m.split(".")[0] in ("httpx", "httpcore", "h11")}
    loaded = _imported("from zeroimage.transports.http import httpx; httpx.Client")
    assert "httpx" in loaded and "httpx._main" not in loaded  # and never its command line
