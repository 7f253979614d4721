"""Real Go programs built with Debian's Go (``golang-go``) against modules served from local
files, and the build info ``go version -m`` reads from them: the independent reference the SBOM's
Go reader is checked against.

No module proxy is reachable here. A directory laid out as the GOPROXY protocol describes
(``<escaped module path>/@v/list``, ``<version>.info``, ``<version>.mod``, ``<version>.zip``) is
one, served with ``GOPROXY=file:///DIR``; ``GOSUMDB=off`` (no checksum database either) and
``GOFLAGS=-mod=mod`` (go.sum is written by the build) let ``go build`` fetch from it.

The program built here has two dependencies, one of them replaced by a third module (a ``=>``
line in the build info), one with upper-case letters in its path (escaped ``!x`` in the proxy,
lowercased in its purl), and a build setting that needs quoting (``-ldflags`` with a space).
Programs are cached per session directory, keyed by the Go version and this module's recipe.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tests.support.peers import which

#: The module path of the program built, and its dependencies (path, version, files).
MAIN = "example.com/hello"
MODULES: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("example.com/Upper/Greet", "v1.2.3", {"greet.go": 'package greet\n\nfunc Hello() string { return "hello" }\n'}),
    ("example.com/old", "v0.1.0", {"old.go": 'package old\n\nfunc Name() string { return "old" }\n'}),
    ("example.com/new", "v0.2.0", {"old.go": 'package old\n\nfunc Name() string { return "new" }\n'}),
)
#: A build setting whose value has a space: ``go version -m`` shows it quoted.
LDFLAGS = "-X main.greeting=hi -s"

_PROGRAM = """package main

import (
\t"fmt"

\tgreet "example.com/Upper/Greet"
\t"example.com/old"
)

var greeting = "none"

func main() { fmt.Println(greet.Hello(), old.Name(), greeting) }
"""

_GO_MOD = f"""module {MAIN}

go 1.19

require (
\texample.com/Upper/Greet v1.2.3
\texample.com/old v0.1.0
)

replace example.com/old => example.com/new v0.2.0
"""


def escape_path(path: str) -> str:
    """A module path as the proxy protocol writes it: each upper-case letter as ``!`` and the letter."""
    return "".join(f"!{c.lower()}" if c.isupper() else c for c in path)


def write_module(proxy: Path, path: str, version: str, files: dict[str, str]) -> None:
    """One module version in the proxy directory: its .info, .mod, .zip and list entry."""
    module_dir = proxy / escape_path(path) / "@v"
    module_dir.mkdir(parents=True, exist_ok=True)
    go_mod = f"module {path}\n\ngo 1.19\n"
    (module_dir / f"{version}.info").write_text(json.dumps({"Version": version, "Time": "2024-01-02T03:04:05Z"}))
    (module_dir / f"{version}.mod").write_text(go_mod)
    with zipfile.ZipFile(module_dir / f"{version}.zip", "w") as archive:
        archive.writestr(f"{path}@{version}/go.mod", go_mod)
        for name, text in files.items():
            archive.writestr(f"{path}@{version}/{name}", text)
    with open(module_dir / "list", "a") as listing:
        listing.write(version + "\n")


def go_environment(work: Path, proxy: Path) -> dict[str, str]:
    """An environment in which ``go`` reads modules only from ``proxy`` and writes only under ``work``."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "TMPDIR")}
    return {
        **keep,
        "HOME": str(work / "home"),
        "GOPATH": str(work / "gopath"),
        "GOMODCACHE": str(work / "gopath" / "pkg" / "mod"),
        "GOCACHE": str(work / "gocache"),
        "GOPROXY": proxy.as_uri(),
        "GOSUMDB": "off",
        "GOFLAGS": "-mod=mod",
        "GONOSUMDB": "*",
        "GOTOOLCHAIN": "local",
        "CGO_ENABLED": "0",
        "GO111MODULE": "on",
    }


@dataclass(frozen=True)
class GoProgram:
    """A program built by :func:`build_go_program`, and what ``go version -m`` says of it."""

    path: Path
    version_m: str  # the output of ``go version -m PATH``


def _recipe_key(go_version: str) -> str:
    recipe = json.dumps([go_version, MAIN, MODULES, LDFLAGS, _PROGRAM, _GO_MOD])
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def go_version_m(path: Path) -> str:
    """What ``go version -m PATH`` prints (it looks only at files with an execute bit, and says
    so on stderr with exit code 0 otherwise: that is a failure here)."""
    go = which("go")
    assert go is not None
    proc = subprocess.run([go, "version", "-m", str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith(f"{path}: "), proc.stderr
    return proc.stdout


def build_go_program(cache_dir: Path) -> GoProgram | None:
    """The program (see the module), built once and cached under ``cache_dir``; None without Go."""
    go = which("go")
    if go is None:
        return None
    go_version = subprocess.run([go, "version"], capture_output=True, text=True, timeout=60).stdout.strip()
    target = cache_dir / f"go-hello-{_recipe_key(go_version)}"
    if target.is_file():
        return GoProgram(target, go_version_m(target))
    cache_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="go-hello-", dir=cache_dir))
    try:
        proxy = work / "proxy"
        for path, version, files in MODULES:
            write_module(proxy, path, version, files)
        source = work / "src"
        source.mkdir()
        (source / "go.mod").write_text(_GO_MOD)
        (source / "main.go").write_text(_PROGRAM)
        out = work / "hello"
        proc = subprocess.run(
            [go, "build", "-o", str(out), f"-ldflags={LDFLAGS}", "."],
            cwd=source,
            env=go_environment(work, proxy),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, f"go build failed:\n{proc.stderr}"
        os.replace(out, target)
    finally:
        # the module cache is written read-only: make it removable first
        for root, dirs, _ in os.walk(work):
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o755)
        shutil.rmtree(work, ignore_errors=True)
    return GoProgram(target, go_version_m(target))
