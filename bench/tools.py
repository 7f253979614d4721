"""The tools under comparison, driven as a user would drive them, one process per step.

Every step is timed from just before its process starts to just after it exits (wall clock);
a builder's time is the sum of its steps. Set-up that has no counterpart in the others (copying
the base layout for umoci, ``buildah rm``) happens outside the timed steps. With
``measure_rss`` each step runs under ``/usr/bin/time -v`` and the largest "Maximum resident set
size" of the steps is reported.

- :class:`Zeroimage`: ``zeroimage build -q ...`` with ``ZEROIMAGE_CACHE_DIR`` set per call.
- :class:`UmociPipeline`: ``umoci insert`` + ``umoci config --config.entrypoint`` on a copy of the
  base layout, then ``skopeo copy`` to an OCI archive or to a registry.
- :class:`Buildah`: ``buildah from`` / ``copy`` / ``config --entrypoint`` / ``commit`` with vfs
  storage under a private ``--root``/``--runroot``; ``--disable-compression=false``, because
  buildah would otherwise write uncompressed layers (its default) and skip the work the others do.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support import peers

TIME = Path("/usr/bin/time")
_RSS = re.compile(r"Maximum resident set size \(kbytes\): (\d+)")


class ToolError(RuntimeError):
    """A step failed; the message names the command, its exit code and its stderr tail."""


@dataclass(frozen=True)
class Outcome:
    seconds: float
    peak_rss_kib: int | None = None
    stdout: str = ""

    @property
    def peak_rss_mib(self) -> float | None:
        return None if self.peak_rss_kib is None else self.peak_rss_kib / 1024

    def then(self, other: Outcome) -> Outcome:
        """Both steps, one after the other: times add up, the peak is the larger one."""
        peaks = [p for p in (self.peak_rss_kib, other.peak_rss_kib) if p is not None]
        return Outcome(self.seconds + other.seconds, max(peaks) if peaks else None, other.stdout)


def run_step(
    argv: Sequence[str | Path],
    *,
    env: Mapping[str, str] | None = None,
    stdin: Path | None = None,
    keep_stdout: bool = True,
    measure_rss: bool = False,
    timeout: float = 1800,
) -> Outcome:
    """Run one process, timed; raise :class:`ToolError` if it fails."""
    cmd = [str(a) for a in argv]
    cmd[0] = peers.which(cmd[0]) or cmd[0]
    rss_file: str | None = None
    if measure_rss:
        fd, rss_file = tempfile.mkstemp(prefix="bench-time-", suffix=".txt")
        os.close(fd)
        cmd = [str(TIME), "-v", "-o", rss_file, *cmd]
    try:
        with open(stdin, "rb") if stdin is not None else open(os.devnull, "rb") as source:
            start = time.perf_counter()
            proc = subprocess.run(
                cmd,
                stdin=source,
                stdout=subprocess.PIPE if keep_stdout else subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=None if env is None else {**os.environ, **env},
                timeout=timeout,
            )
            seconds = time.perf_counter() - start
        if proc.returncode != 0:
            tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-5:]
            raise ToolError(f"{subprocess.list2cmdline(cmd)} exited with {proc.returncode}: " + " | ".join(tail))
        peak = None
        if rss_file is not None:
            match = _RSS.search(Path(rss_file).read_text())
            peak = int(match.group(1)) if match else None
        stdout = proc.stdout.decode("utf-8", "replace") if keep_stdout else ""
        return Outcome(seconds, peak, stdout)
    except subprocess.TimeoutExpired:
        raise ToolError(f"{subprocess.list2cmdline(cmd)} timed out after {timeout:g} s") from None
    finally:
        if rss_file is not None:
            Path(rss_file).unlink(missing_ok=True)


def version(tool: str, *args: str) -> str:
    """First line of ``TOOL --version`` (or of ``args``), or ``missing``."""
    if peers.which(tool) is None:
        return "missing"
    proc = subprocess.run([tool, *(args or ("--version",))], capture_output=True, text=True)
    lines = (proc.stdout or proc.stderr).strip().splitlines()
    return lines[0] if lines else "?"


class Zeroimage:
    """``zeroimage build`` with a cache directory chosen per call."""

    name = "zeroimage"

    def __init__(self, exe: Path, scratch: Path) -> None:
        self.exe = exe
        self.scratch = scratch
        self._caches = itertools.count(1)

    def fresh_cache(self) -> Path:
        """A new, empty cache directory (remove it with :func:`shutil.rmtree` when done)."""
        path = self.scratch / f"zeroimage-cache-{next(self._caches)}"
        path.mkdir(parents=True)
        return path

    def build(
        self,
        args: Sequence[str | Path],
        *,
        cache: Path,
        env: Mapping[str, str] | None = None,
        measure_rss: bool = False,
    ) -> Outcome:
        return run_step(
            [self.exe, "build", "-q", *args],
            env={"ZEROIMAGE_CACHE_DIR": str(cache), **(env or {})},
            measure_rss=measure_rss,
        )

    def archive(
        self,
        binary: Path,
        base: Path | None,
        out: Path,
        *,
        measure_rss: bool = False,
        extra: Sequence[str] = (),
    ) -> Outcome:
        """Build ``binary`` on ``base`` (None: FROM scratch) into an OCI archive, on a fresh cache."""
        cache = self.fresh_cache()
        try:
            source: list[str | Path] = ["--from-archive", base] if base is not None else []
            return self.build([*source, *extra, "-o", out, binary], cache=cache, measure_rss=measure_rss)
        finally:
            shutil.rmtree(cache, ignore_errors=True)

    def push(
        self,
        binary: Path,
        base: Path,
        ref: str,
        *,
        cache: Path,
        env: Mapping[str, str] | None = None,
        measure_rss: bool = False,
        extra: Sequence[str] = (),
    ) -> Outcome:
        return self.build(
            ["--from-archive", base, *extra, "--push", ref, binary], cache=cache, env=env, measure_rss=measure_rss
        )


class UmociPipeline:
    """``umoci insert`` + ``umoci config`` on a copy of the base layout, then ``skopeo copy``."""

    name = "umoci+skopeo"

    def __init__(self, base_layout: Path, scratch: Path, tag: str = "latest") -> None:
        self.base_layout = base_layout
        self.scratch = scratch
        self.tag = tag
        self._copies = itertools.count(1)
        self._rootless = ["--rootless"] if os.geteuid() != 0 else []

    def _build(self, binary: Path, measure_rss: bool) -> tuple[Path, Outcome]:
        layout = self.scratch / f"umoci-layout-{next(self._copies)}"
        shutil.copytree(self.base_layout, layout)  # not timed: umoci changes the layout in place
        image = f"{layout}:{self.tag}"
        dest = f"/{binary.name}"
        inserted = run_step(
            ["umoci", "insert", *self._rootless, "--image", image, binary, dest], measure_rss=measure_rss
        )
        configured = run_step(
            ["umoci", "config", *self._rootless, "--image", image, "--config.entrypoint", dest],
            measure_rss=measure_rss,
        )
        return layout, inserted.then(configured)

    def _copy(self, binary: Path, dest: str, extra: Sequence[str], measure_rss: bool) -> Outcome:
        layout: Path | None = None
        try:
            layout, built = self._build(binary, measure_rss)
            copied = run_step(
                ["skopeo", "copy", "-q", *extra, f"oci:{layout}:{self.tag}", dest], measure_rss=measure_rss
            )
            return built.then(copied)
        finally:
            if layout is not None:
                shutil.rmtree(layout, ignore_errors=True)

    def archive(self, binary: Path, out: Path, *, measure_rss: bool = False) -> Outcome:
        return self._copy(binary, f"oci-archive:{out}", [], measure_rss)

    def push(self, binary: Path, ref: str) -> Outcome:
        return self._copy(binary, f"docker://{ref}", ["--dest-tls-verify=false"], False)


class Buildah:
    """buildah with vfs storage under a private root; :meth:`cleanup` removes everything."""

    name = "buildah"

    def __init__(self, base_archive: Path, root: Path) -> None:
        self.base_archive = base_archive
        self.root = root
        self.cmd: list[str | Path] = [
            "buildah",
            "--root",
            root / "storage",
            "--runroot",
            root / "run",
            "--storage-driver",
            "vfs",
        ]

    def archive(self, binary: Path, out: Path) -> Outcome:
        created = run_step([*self.cmd, "from", "-q", f"oci-archive:{self.base_archive}"])
        container = created.stdout.strip().splitlines()[-1]
        try:
            dest = f"/{binary.name}"
            total = created.then(run_step([*self.cmd, "copy", "-q", container, binary, dest]))
            total = total.then(run_step([*self.cmd, "config", "--entrypoint", f'["{dest}"]', container]))
            commit = ["commit", "-q", "--disable-compression=false", "--format", "oci", container]
            return total.then(run_step([*self.cmd, *commit, f"oci-archive:{out}"]))
        finally:
            subprocess.run([*map(str, self.cmd), "rm", container], capture_output=True)

    def cleanup(self) -> None:
        if self.root.exists():
            subprocess.run([*map(str, self.cmd), "rm", "--all"], capture_output=True)
            subprocess.run([*map(str, self.cmd), "rmi", "--all", "--force"], capture_output=True)
            shutil.rmtree(self.root, ignore_errors=True)
