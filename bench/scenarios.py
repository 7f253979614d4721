"""The scenarios of the performance issues, plus compression throughput for context.

Each scenario runs its contenders alternately (the order rotates every round, so none always
goes first), ``runs`` rounds, and records every sample. Before every timed run of any tool the
binary gets fresh content (:meth:`~bench.workload.Binary.freshen`), dirty pages are flushed
(``sync``) and zeroimage gets an empty cache directory, so no cache hit hides the cost.

1. binary → OCI archive on the base: zeroimage vs the umoci pipeline and vs buildah.
2. binary → pushed to a loopback registry: zeroimage vs umoci + ``skopeo copy docker://``.
3. the same push again, unchanged (``SOURCE_DATE_EPOCH`` fixed, zeroimage's cache kept):
   re-push time / first push time, and the blob uploads the registry saw during the re-push.
4. peak RSS (``/usr/bin/time -v``) building the small and the big binary into an archive.
5. start-up: ``zeroimage --version`` and ``--help`` against ``python3 -c pass``.
6. a fleet: runner A (empty cache) pushes a program to a tag; runner B (another empty cache, the
   program copied afresh) pushes it again: B / A, blob uploads and layers compressed during B.
7. ``touch`` of an unchanged program, rebuilt into an OCI archive with the same cache: rebuild /
   first build.
8. two archive builds from a base in the registry, one cache: blobs the second one downloads.
9. binary → pushed with ``--sbom spdx --sign-key KEY`` against the same push without: the cost of
   signing and describing the image (SBOM, signature bundle, legacy signature, the referrers),
   and the peak RSS of both.

In 3, 6, 7 and 8 zeroimage is compared with its own first build, which must come first; their
untimed warm-up round (on a copy of busybox) compiles the bytecode of the paths they take.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from tests.support.registry import Registry, seed

from bench.report import Report, Row, Target, log, median
from bench.tools import Buildah, Outcome, ToolError, UmociPipeline, Zeroimage, run_step
from bench.workload import BUSYBOX, Binary

SOURCE_DATE_EPOCH = "1700000000"
STARTUP_RUNS = 20
RSS_LIMIT_MIB = 64.0

#: A contender measures one run and returns the number to record (seconds or MiB).
Measure = Callable[[], float]


@dataclass
class Bench:
    """What every scenario needs: the inputs, the tools found, and where results go."""

    work: Path
    runs: int
    zeroimage: Zeroimage
    small: Binary
    base: Path
    report: Report
    big: Binary | None = None
    umoci: UmociPipeline | None = None
    buildah: Buildah | None = None
    registry: Registry | None = None
    _tags: int = field(default=0)

    def out(self, name: str) -> Path:
        return self.work / "out" / name

    def next_ref(self) -> str:
        assert self.registry is not None
        self._tags += 1
        return f"{self.registry.host}/bench:run{self._tags}"


def alternate(
    bench: Bench,
    contenders: dict[str, Measure],
    *,
    runs: int,
    binary: Binary | None,
    what: str,
    verbose: bool = True,
) -> dict[str, list[float]]:
    """Run ``contenders`` alternately ``runs`` rounds; return each one's samples.

    ``binary`` (if any) gets fresh content before each run; ``verbose`` logs every round. A peer
    that fails is noted and dropped; if zeroimage fails, the scenario stops (ToolError).
    """
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    active = list(contenders)
    for round_ in range(runs):
        order = active[round_ % len(active) :] + active[: round_ % len(active)]
        line: list[str] = []
        for name in order:
            if binary is not None:
                binary.freshen()
            os.sync()
            try:
                value = contenders[name]()
            except ToolError as exc:
                if name == "zeroimage":
                    raise
                bench.report.note(f"{what}: {name} failed and was dropped: {exc}")
                active.remove(name)
                continue
            samples[name].append(value)
            line.append(f"{name} {value:.3f}")
        if verbose:
            log(f"{what}: round {round_ + 1}/{runs}: " + ", ".join(line))
    if not verbose:
        log(f"{what}: medians " + ", ".join(f"{n} {median(v) or 0:.3f}" for n, v in samples.items()))
    return samples


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _timed(action: Callable[[], Outcome], cleanup: Path | None = None) -> Measure:
    def measure() -> float:
        try:
            return action().seconds
        finally:
            if cleanup is not None:
                _remove(cleanup)

    return measure


def _file_mb(path: Path) -> float:
    return path.stat().st_size / 1e6


# ---------------------------------------------------------------------------------------------- 1


def archive_scenario(bench: Bench) -> None:
    """1. binary → OCI archive on the base, against the umoci pipeline and buildah."""
    z, binary = bench.zeroimage, bench.small
    peers: list[UmociPipeline | Buildah] = [p for p in (bench.umoci, bench.buildah) if p is not None]
    if not peers:
        bench.report.note("scenario 1 skipped: neither umoci+skopeo nor buildah is available")
        return
    sizes: dict[str, float] = {}

    def contender(name: str, build: Callable[[Path], Outcome]) -> Measure:
        out = bench.out(f"s1-{name.replace('+', '-')}.tar")

        def measure() -> float:
            try:
                seconds = build(out).seconds
                sizes.setdefault(name, _file_mb(out))
                return seconds
            finally:
                _remove(out)

        return measure

    contenders = {"zeroimage": contender("zeroimage", lambda out: z.archive(binary.path, bench.base, out))}
    for peer in peers:
        contenders[peer.name] = contender(peer.name, _peer_archive(peer, binary))
    samples = alternate(bench, contenders, runs=bench.runs, binary=binary, what="[1] archive")
    for peer in peers:
        bench.report.add(
            Row(
                "1",
                f"{binary.megabytes:.0f} MB binary -> OCI archive on base",
                peer.name,
                "s",
                Target(0.35, 0.25),
                samples["zeroimage"],
                samples[peer.name],
            )
        )
    bench.report.context["archive_mb"] = sizes


def _peer_archive(peer: UmociPipeline | Buildah, binary: Binary) -> Callable[[Path], Outcome]:
    return lambda out: peer.archive(binary.path, out)


# ---------------------------------------------------------------------------------------------- 2


def push_scenario(bench: Bench) -> None:
    """2. binary → pushed to the loopback registry, against umoci + ``skopeo copy docker://``."""
    if bench.registry is None:
        bench.report.note("scenario 2 skipped: docker-registry is not available")
        return
    z, binary, umoci = bench.zeroimage, bench.small, bench.umoci

    def zeroimage_push() -> float:
        cache = z.fresh_cache()
        try:
            return z.push(binary.path, bench.base, bench.next_ref(), cache=cache).seconds
        finally:
            shutil.rmtree(cache, ignore_errors=True)

    contenders: dict[str, Measure] = {"zeroimage": zeroimage_push}
    if umoci is not None:
        contenders[umoci.name] = lambda: umoci.push(binary.path, bench.next_ref()).seconds
    samples = alternate(bench, contenders, runs=bench.runs, binary=binary, what="[2] push")
    bench.registry.check_alive()
    row = Row(
        "2",
        f"{binary.megabytes:.0f} MB binary -> push to 127.0.0.1 registry",
        umoci.name if umoci is not None else "(none)",
        "s",
        Target(0.40, 0.30),
        samples["zeroimage"],
        samples.get("umoci+skopeo", []),
    )
    if umoci is None:
        row.note = "umoci/skopeo missing: no peer"
    bench.report.add(row)


# ---------------------------------------------------------------------------------------------- 3


def _uploads(lines: list[str]) -> int:
    """Blob uploads started (``POST /v2/<repo>/blobs/uploads/``, cross-repository mounts included)."""
    return sum(1 for line in lines if '"POST /v2/' in line and "/blobs/uploads/" in line)


def repush_scenario(bench: Bench) -> None:
    """3. push, then the same push again unchanged: re-push / first push, and blob uploads."""
    registry = bench.registry
    if registry is None:
        bench.report.note("scenario 3 skipped: docker-registry is not available")
        return
    z, binary = bench.zeroimage, bench.small
    env = {"SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH}
    first: list[float] = []
    again: list[float] = []
    uploads: list[int] = []
    same_digest = True
    for round_ in range(bench.runs):
        binary.freshen()
        cache = z.fresh_cache()
        ref = bench.next_ref()
        try:
            os.sync()
            one = z.push(binary.path, bench.base, ref, cache=cache, env=env)
            mark = len(registry.access_log())
            os.sync()
            two = z.push(binary.path, bench.base, ref, cache=cache, env=env)
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        first.append(one.seconds)
        again.append(two.seconds)
        uploads.append(_uploads(registry.access_log()[mark:]))
        same_digest = same_digest and one.stdout.strip() == two.stdout.strip()
        log(
            f"[3] re-push: round {round_ + 1}/{bench.runs}: first {one.seconds:.3f}, "
            f"again {two.seconds:.3f}, blob uploads {uploads[-1]}"
        )
    row = Row(
        "3",
        "unchanged re-push / first push (cache kept)",
        "own first push",
        "s",
        Target(0.35, 0.2),
        again,
        first,
    )
    row.note = (
        f"blob uploads during re-push: {max(uploads)} (per run {uploads}; should be 0); "
        f"same digest both times: {'yes' if same_digest else 'NO'}"
    )
    bench.report.add(row)
    bench.report.context["repush_blob_uploads"] = uploads
    bench.report.context["repush_same_digest"] = same_digest


# ---------------------------------------------------------------------------------------------- 4


def memory_scenario(bench: Bench) -> None:
    """4. peak RSS of zeroimage (and of the umoci pipeline) building into an OCI archive; and of
    zeroimage pushing, where the layer passes through memory (a bounded window) to the upload."""
    times: dict[str, dict[str, float | None]] = {}
    for binary in (bench.small, bench.big):
        if binary is not None:
            times[f"{binary.megabytes:.0f} MB"] = _memory_row(bench, binary)
            if bench.registry is not None:
                _push_memory_row(bench, binary)
    bench.report.context["rss_build_seconds"] = times


def _push_memory_row(bench: Bench, binary: Binary) -> None:
    def measure() -> float:
        cache = bench.zeroimage.fresh_cache()
        try:
            outcome = bench.zeroimage.push(binary.path, bench.base, bench.next_ref(), cache=cache, measure_rss=True)
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        if outcome.peak_rss_mib is None:
            raise ToolError("zeroimage: /usr/bin/time reported no maximum resident set size")
        return outcome.peak_rss_mib

    label = f"{binary.megabytes:.0f} MB"
    samples = alternate(bench, {"zeroimage": measure}, runs=bench.runs, binary=binary, what=f"[4] push RSS {label}")
    bench.report.add(
        Row(
            "4",
            f"peak RSS, {label} binary -> push",
            "(none)",
            "MiB",
            Target(RSS_LIMIT_MIB, quantity="zeroimage"),
            samples["zeroimage"],
            [],
        )
    )


def _memory_row(bench: Bench, binary: Binary) -> dict[str, float | None]:
    """Add the peak-RSS row of ``binary``; return each builder's median build time."""
    z, umoci = bench.zeroimage, bench.umoci
    seconds: dict[str, list[float]] = {}

    def rss(name: str, build: Callable[[Path], Outcome]) -> Measure:
        out = bench.out(f"s4-{name.replace('+', '-')}-{binary.path.name}.tar")

        def measure() -> float:
            try:
                outcome = build(out)
            finally:
                _remove(out)
            if outcome.peak_rss_mib is None:
                raise ToolError(f"{name}: /usr/bin/time reported no maximum resident set size")
            seconds.setdefault(name, []).append(outcome.seconds)
            return outcome.peak_rss_mib

        return measure

    path = binary.path
    contenders = {"zeroimage": rss("zeroimage", lambda out: z.archive(path, bench.base, out, measure_rss=True))}
    if umoci is not None:
        contenders[umoci.name] = rss(umoci.name, lambda out: umoci.archive(path, out, measure_rss=True))
    label = f"{binary.megabytes:.0f} MB"
    samples = alternate(bench, contenders, runs=bench.runs, binary=binary, what=f"[4] peak RSS {label}")
    bench.report.add(
        Row(
            "4",
            f"peak RSS, {label} binary -> OCI archive",
            umoci.name if umoci is not None else "(none)",
            "MiB",
            Target(RSS_LIMIT_MIB, quantity="zeroimage"),
            samples["zeroimage"],
            samples.get("umoci+skopeo", []),
        )
    )
    return {name: median(values) for name, values in seconds.items()}


# ---------------------------------------------------------------------------------------------- 5


def startup_scenario(bench: Bench) -> None:
    """5. ``zeroimage --version`` and ``--help`` against ``python3 -c pass`` (same interpreter)."""
    python = Path(sys.executable)
    for flag in ("--version", "--help"):
        contenders: dict[str, Measure] = {
            "zeroimage": _timed(partial(run_step, [bench.zeroimage.exe, flag])),
            "python3 -c pass": _timed(partial(run_step, [python, "-c", "pass"])),
        }
        for measure in contenders.values():  # warm the page cache and the .pyc files
            measure()
        samples = alternate(bench, contenders, runs=STARTUP_RUNS, binary=None, what=f"[5] {flag}", verbose=False)
        bench.report.add(
            Row(
                "5",
                f"zeroimage {flag} start-up",
                "python3 -c pass",
                "s",
                Target(0.15, quantity="zeroimage"),
                samples["zeroimage"],
                samples["python3 -c pass"],
            )
        )


# ---------------------------------------------------------------------------------------------- context


def compression_context(bench: Bench) -> None:
    """Single-file compression throughput on the small binary: zeroimage's gzip and zstd layers
    (a whole FROM-scratch archive) against gzip -1, pigz -1 and zstd -3 -T0 to /dev/null."""
    binary = bench.small
    sizes: dict[str, float] = {}

    def zeroimage(compression: str) -> Measure:
        out = bench.out(f"ctx-scratch-{compression}.tar")

        def measure() -> float:
            try:
                seconds = bench.zeroimage.archive(binary.path, None, out, extra=["--compression", compression]).seconds
                sizes[f"zeroimage {compression}"] = _file_mb(out)
                return seconds
            finally:
                _remove(out)

        return measure

    contenders: dict[str, Measure] = {"zeroimage": zeroimage("gzip"), "zeroimage zstd": zeroimage("zstd")}
    for tool, args in (("gzip", ["-1"]), ("pigz", ["-1"]), ("zstd", ["-3", "-T0"])):
        if shutil.which(tool):
            command = partial(run_step, [tool, *args, "-c"], stdin=binary.path, keep_stdout=False)
            contenders[" ".join([tool, *args])] = _timed(command)
        else:
            bench.report.note(f"{tool} is missing: no {tool} throughput")
    samples = alternate(bench, contenders, runs=bench.runs, binary=binary, what="[c] compression")
    throughput: dict[str, float | None] = {}
    for name, values in samples.items():
        seconds = median(values)
        throughput[name] = None if not seconds else binary.megabytes / seconds
    bench.report.context["compression_mb_per_s"] = throughput
    bench.report.context["compressed_mb"] = sizes


# ---------------------------------------------------------------------------------------------- 6


@dataclass(frozen=True)
class Result:
    """What ``zeroimage build --json`` said about one build, and how long it took."""

    seconds: float
    digest: str
    origins: tuple[str, ...]  # per new layer: "made", "cache" or "registry"
    layers: tuple[str, ...]  # the new layers' digests

    @classmethod
    def of(cls, outcome: Outcome) -> Result:
        document = json.loads(outcome.stdout)
        layers = [layer for platform in document["platforms"] for layer in platform["layers"]]
        return cls(
            outcome.seconds,
            document["digest"],
            tuple(layer["origin"] for layer in layers),
            tuple(layer["digest"] for layer in layers),
        )


def _warm_program(bench: Bench) -> Path:
    """A copy of the small static busybox (never the system's own file, which (7) touches), for an
    untimed round that compiles the bytecode of a scenario's code paths before its timed rounds."""
    path = bench.work / "warm" / "app"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(BUSYBOX, path)
    return path


def _checkout(program: Path, runner: Path) -> Path:
    """``program`` as a fresh checkout on another runner gives it: the same name and bytes in
    another directory, a new inode and mtime. Flushed, so that its write-back does not land in
    the next timed run."""
    runner.mkdir(parents=True, exist_ok=True)
    copy = runner / program.name  # the same name: the same path in the image
    shutil.copy(program, copy)
    os.sync()
    return copy


def fleet_scenario(bench: Bench) -> None:
    """6. runner A (empty cache) pushes P to T; runner B (another empty cache, P checked out
    afresh) pushes the same P to T: B / A, the blob uploads the registry saw during B, and the
    layers B compressed (its ``--json`` origins; all should be "registry")."""
    registry = bench.registry
    if registry is None:
        bench.report.note("scenario 6 skipped: docker-registry is not available")
        return
    z, binary = bench.zeroimage, bench.small
    env = {"SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH}

    def round_(program: Path, ref: str) -> tuple[Result, Result, int, int]:
        cache_a, cache_b = z.fresh_cache(), z.fresh_cache()
        copy: Path | None = None
        try:
            os.sync()
            mark = len(registry.access_log())
            a = Result.of(z.push(program, bench.base, ref, cache=cache_a, env=env, extra=["--json"]))
            uploads_a = _uploads(registry.access_log()[mark:])
            copy = _checkout(program, bench.work / "runner-b")
            mark = len(registry.access_log())
            b = Result.of(z.push(copy, bench.base, ref, cache=cache_b, env=env, extra=["--json"]))
            return a, b, uploads_a, _uploads(registry.access_log()[mark:])
        finally:
            shutil.rmtree(cache_a, ignore_errors=True)
            shutil.rmtree(cache_b, ignore_errors=True)
            if copy is not None:
                copy.unlink(missing_ok=True)

    round_(_warm_program(bench), bench.next_ref())
    first: list[float] = []
    second: list[float] = []
    uploads: list[float] = []
    compressed: list[float] = []
    uploads_a: list[int] = []
    origins: set[str] = set()
    same_digest = True
    for n in range(bench.runs):
        binary.freshen()
        a, b, up_a, up_b = round_(binary.path, bench.next_ref())
        first.append(a.seconds)
        second.append(b.seconds)
        uploads.append(up_b)
        uploads_a.append(up_a)
        compressed.append(b.origins.count("made"))
        origins.update(b.origins)
        same_digest = same_digest and a.digest == b.digest
        log(
            f"[6] fleet: round {n + 1}/{bench.runs}: runner A {a.seconds:.3f} ({up_a} uploads), "
            f"runner B {b.seconds:.3f} ({up_b} uploads, layers {', '.join(b.origins)})"
        )
    row = Row(
        "6", "unchanged push from an empty cache / first push", "runner A's push", "s", Target(0.25), second, first
    )
    row.note = (
        f"runner B's new layers came from: {', '.join(sorted(origins))} (should be registry); "
        f"same digest on both runners: {'yes' if same_digest else 'NO'}; "
        f"blob uploads during runner A's push: {uploads_a}"
    )
    bench.report.add(row)
    zero = Target(0, quantity="worst")
    bench.report.add(Row("6", "blob uploads during runner B's push", "(none)", "uploads", zero, uploads))
    bench.report.add(Row("6", "layers compressed by runner B", "(none)", "layers", zero, compressed))
    bench.report.context["fleet"] = {"uploads_a": uploads_a, "same_digest": same_digest, "origins_b": sorted(origins)}


# ---------------------------------------------------------------------------------------------- 7


def touch_scenario(bench: Bench) -> None:
    """7. build into an OCI archive, ``touch`` the program, build again with the same cache: the
    layer is found by content (``--json`` origin "cache"), so rebuild / first build."""
    z, binary = bench.zeroimage, bench.small

    def round_(program: Path) -> tuple[Result, Result]:
        cache = z.fresh_cache()
        out = bench.out("s7.tar")
        try:
            os.sync()
            first = Result.of(z.build(["--from-archive", bench.base, "--json", "-o", out, program], cache=cache))
            out.unlink()
            os.utime(program)  # touch: a new mtime (and ctime), the same bytes
            os.sync()
            again = Result.of(z.build(["--from-archive", bench.base, "--json", "-o", out, program], cache=cache))
            return first, again
        finally:
            shutil.rmtree(cache, ignore_errors=True)
            out.unlink(missing_ok=True)

    round_(_warm_program(bench))
    first: list[float] = []
    again: list[float] = []
    origins: set[str] = set()
    same_layer = True
    for n in range(bench.runs):
        binary.freshen()
        one, two = round_(binary.path)
        first.append(one.seconds)
        again.append(two.seconds)
        origins.update(two.origins)
        same_layer = same_layer and one.layers == two.layers
        log(
            f"[7] touch: round {n + 1}/{bench.runs}: first {one.seconds:.3f}, "
            f"after touch {two.seconds:.3f} (layers {', '.join(two.origins)})"
        )
    row = Row(
        "7",
        f"{binary.megabytes:.0f} MB, touched -> OCI archive / first build (cache kept)",
        "own first build",
        "s",
        Target(0.5),
        again,
        first,
    )
    row.note = (
        f"the rebuild's new layers came from: {', '.join(sorted(origins))} (should be cache); "
        f"the same layer both times: {'yes' if same_layer else 'NO'}"
    )
    bench.report.add(row)


# ---------------------------------------------------------------------------------------------- 8


def _downloads(lines: list[str]) -> int:
    """Blobs fetched (``GET /v2/<repo>/blobs/sha256:...``; a HEAD fetches nothing)."""
    return sum(1 for line in lines if '"GET /v2/' in line and "/blobs/sha256:" in line)


def _requests(lines: list[str]) -> list[str]:
    """``METHOD /path`` of each access-log line, digests shortened."""
    found = [line.split('"')[1].rsplit(" ", 1)[0] for line in lines if line.count('"') >= 2]
    return [re.sub(r"sha256:([0-9a-f]{12})[0-9a-f]+", r"sha256:\1…", text) for text in found]


def registry_base_scenario(bench: Bench) -> None:
    """8. the base pushed to the registry once; two archive builds ``--from`` it with one cache
    (the program fresh each time): the blobs the second build downloads (should be none)."""
    registry = bench.registry
    if registry is None or shutil.which("skopeo") is None:
        bench.report.note("scenario 8 skipped: it needs docker-registry and skopeo (to push the base)")
        return
    z, binary = bench.zeroimage, bench.small
    base = f"{registry.host}/base:v1"
    try:
        seed(registry, bench.base, "base:v1", all_platforms=False)
    except AssertionError as exc:  # the test helper's way of failing
        raise ToolError(f"skopeo could not push the base: {exc}") from None

    def round_(program: Path, freshen: Callable[[], None]) -> tuple[list[Outcome], list[list[str]]]:
        cache = z.fresh_cache()
        out = bench.out("s8.tar")
        outcomes: list[Outcome] = []
        logs: list[list[str]] = []
        try:
            for _ in range(2):
                freshen()
                os.sync()
                mark = len(registry.access_log())
                outcomes.append(z.build(["--from", base, "-o", out, program], cache=cache))
                logs.append(registry.access_log()[mark:])
                out.unlink()
            return outcomes, logs
        finally:
            shutil.rmtree(cache, ignore_errors=True)
            out.unlink(missing_ok=True)

    round_(_warm_program(bench), lambda: None)
    first: list[float] = []
    second: list[float] = []
    downloads: list[float] = []
    first_downloads: list[int] = []
    seen: list[str] = []
    for n in range(bench.runs):
        (one, two), (log_one, log_two) = round_(binary.path, binary.freshen)
        first.append(one.seconds)
        second.append(two.seconds)
        first_downloads.append(_downloads(log_one))
        downloads.append(_downloads(log_two))
        seen = _requests(log_two)
        log(
            f"[8] registry base: round {n + 1}/{bench.runs}: first {one.seconds:.3f} "
            f"({first_downloads[-1]} blob downloads), second {two.seconds:.3f} ({downloads[-1]}: {'; '.join(seen)})"
        )
    row = Row(
        "8",
        "blob downloads during a 2nd archive build from a registry base",
        "(none)",
        "blobs",
        Target(0, quantity="worst"),
        downloads,
    )
    row.note = f"first build's downloads per run: {first_downloads}; the second build's requests: {'; '.join(seen)}"
    bench.report.add(row)
    label = f"{binary.megabytes:.0f} MB -> OCI archive from a registry base, 2nd / 1st"
    bench.report.add(Row("8", label, "own first build", "s", None, second, first))


# ---------------------------------------------------------------------------------------------- 9


def _signing_key(work: Path) -> Path:
    """A fresh ECDSA P-256 key (PKCS#8 PEM, unencrypted) for the signed pushes."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    path = work / "bench-signing.key"
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return path


def attachments_scenario(bench: Bench) -> None:
    """9. a push with ``--sbom spdx --sign-key`` against the same push without, alternately."""
    if bench.registry is None:
        bench.report.note("scenario 9 skipped: docker-registry is not available")
        return
    z, binary = bench.zeroimage, bench.small
    signing = ["--sbom", "spdx", "--sign-key", str(_signing_key(bench.work))]
    rss: dict[str, list[float]] = {"signed": [], "plain": []}

    def push(extra: list[str], name: str) -> Measure:
        def measure() -> float:
            cache = z.fresh_cache()
            try:
                outcome = z.push(binary.path, bench.base, bench.next_ref(), cache=cache, extra=extra, measure_rss=True)
            finally:
                shutil.rmtree(cache, ignore_errors=True)
            if outcome.peak_rss_mib is not None:
                rss[name].append(outcome.peak_rss_mib)
            return outcome.seconds

        return measure

    contenders = {"zeroimage": push(signing, "signed"), "unsigned push": push([], "plain")}
    samples = alternate(bench, contenders, runs=bench.runs, binary=binary, what="[9] signed push")
    bench.registry.check_alive()
    row = Row(
        "9",
        f"{binary.megabytes:.0f} MB binary -> push with --sbom spdx --sign-key, / the same push without",
        "unsigned push",
        "s",
        Target(1.15),
        samples["zeroimage"],
        samples["unsigned push"],
    )
    row.note = (
        f"peak RSS, medians: {median(rss['signed']) or 0:.1f} MiB signed, {median(rss['plain']) or 0:.1f} MiB without"
    )
    bench.report.add(row)


SCENARIOS: dict[str, Callable[[Bench], None]] = {
    "1": archive_scenario,
    "2": push_scenario,
    "3": repush_scenario,
    "4": memory_scenario,
    "5": startup_scenario,
    "6": fleet_scenario,
    "7": touch_scenario,
    "8": registry_base_scenario,
    "9": attachments_scenario,
    "c": compression_context,
}
