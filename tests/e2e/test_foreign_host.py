"""The foreign-host run (``make test-foreign-host``) really runs zeroimage as on a host without
Linux's calls: a run whose shim did not load would pass while proving nothing.

The Makefile says the run is meant to be foreign (``ZEROIMAGE_TEST_FOREIGN_HOST=1``) apart from
the PYTHONPATH that makes it so (tests/support/foreign_host), and these tests check that the
zeroimage processes of the run lack the calls and the modes. Elsewhere they skip.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.conftest import Zeroimage
from tests.support import cli, peers
from tests.support.programs import static_amd64_header
from zeroimage.layers.entries import NO_POSIX_MODES

pytestmark = pytest.mark.skipif(
    os.environ.get("ZEROIMAGE_TEST_FOREIGN_HOST") != "1",
    reason="checks the foreign-host run's shim: runs in make test-foreign-host only",
)

PROBE = """
import os, signal, zeroimage.files as files
print(sorted(name for name in ("pread", "pwrite", "copy_file_range", "sched_getaffinity", "O_CLOEXEC", "O_NONBLOCK")
             if hasattr(os, name)))
print(hasattr(signal, "pthread_sigmask"), files.POSIX_MODES, files.WRITEBACK)
"""


def test_the_processes_zeroimage_runs_in_lack_linux_calls(tmp_path: Path) -> None:
    home = cli.Home(work=tmp_path, cache=tmp_path / ".cache", docker_config=tmp_path / ".docker")
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], env=home.env(), cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert proc.stdout.splitlines() == ["[]", "False False False"], proc.stderr


def test_a_build_there_takes_modes_from_what_files_are(zeroimage: Zeroimage, tmp_path: Path) -> None:
    program = tmp_path / "app"
    program.write_bytes(static_amd64_header() + b"\0" * 1000)
    program.chmod(0o700)  # bits a host without POSIX modes could not have given
    tree = tmp_path / "site"
    (tree / "css").mkdir(parents=True)
    (tree / "css" / "a.css").write_text("body{}")
    proc = zeroimage("build", "-o", "out.tar", "--add", f"{tree}:/srv", str(program))
    assert proc.stderr.count(NO_POSIX_MODES) == 1  # said once, by the python -m zeroimage child
    layout = peers.extract_archive(tmp_path / "out.tar", tmp_path / "layout")
    index = peers.read_index(layout)
    manifest = json.loads((layout / "blobs" / "sha256" / index["manifests"][0]["digest"][7:]).read_text())
    modes = {}
    for layer in manifest["layers"]:
        data = gzip.decompress((layout / "blobs" / "sha256" / layer["digest"][7:]).read_bytes())
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            modes |= {m.name: m.mode for m in tar.getmembers()}
    assert modes == {"app": 0o755, "srv": 0o755, "srv/css": 0o755, "srv/css/a.css": 0o644}
