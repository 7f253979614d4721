"""Side-by-side benchmark of zeroimage against umoci + skopeo and buildah.

    .venv/bin/python bench/run.py [--runs N] [--size-mb MB] [--big-mb MB] [--only 1,2,3,4,5,6,7,8,c]
                                  [--json FILE] [--keep]

Implements the project's performance issue (see bench/README.md and bench/scenarios.py): each
scenario runs zeroimage and its peer (or, in 3, 6, 7 and 8, its own first build) ``--runs`` times
on fresh content and reports the medians, their ratio zeroimage/peer, the range of the per-round
ratios and the target (PASS/MISS). Everything lives in a work
directory under ``$TMPDIR`` (removed at the end unless ``--keep``); the registry, buildah's
containers and storage are cleaned up at the end and on Ctrl-C. Progress goes to stderr, the final
table to stdout. Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import ExitStack, contextmanager  # noqa: E402
from types import FrameType  # noqa: E402
from typing import Any  # noqa: E402

from tests.support import peers  # noqa: E402
from tests.support.registry import start_registry  # noqa: E402

from bench import workload  # noqa: E402
from bench.machine import CpuMeter  # noqa: E402
from bench.report import Report, log  # noqa: E402
from bench.scenarios import SCENARIOS, STARTUP_RUNS, Bench  # noqa: E402
from bench.tools import TIME, Buildah, ToolError, UmociPipeline, Zeroimage, version  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.py", description="Benchmark zeroimage against umoci + skopeo and buildah."
    )
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each tool per scenario (default 5)")
    parser.add_argument("--size-mb", type=int, default=200, help="size of the main binary in MB (default 200)")
    parser.add_argument("--big-mb", type=int, default=1000, help="size of the memory-test binary in MB (default 1000)")
    parser.add_argument(
        "--only", default=",".join(SCENARIOS), help="scenarios to run, e.g. 1,2 (c: compression context)"
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="write all results and samples to FILE")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--zeroimage", type=Path, default=default_zeroimage(), help="zeroimage executable")
    args = parser.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in args.only if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}: choose from {', '.join(SCENARIOS)}")
    if args.runs < 1 or args.size_mb < 1 or args.big_mb < 1:
        parser.error("--runs, --size-mb and --big-mb must be positive")
    return args


def default_zeroimage() -> Path:
    beside = Path(sys.executable).parent / "zeroimage"
    return beside if beside.exists() else ROOT / ".venv" / "bin" / "zeroimage"


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def settings(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "runs": args.runs,
        "size_mb": args.size_mb,
        "big_mb": args.big_mb,
        "only": args.only,
        "cpus": len(os.sched_getaffinity(0)),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": {
            "zeroimage": version(str(args.zeroimage)),
            "umoci": version("umoci"),
            "skopeo": version("skopeo"),
            "buildah": version("buildah"),
            "docker-registry": version("docker-registry", "--version"),
            "gzip": version("gzip"),
            "pigz": version("pigz"),
        },
    }


def setup(args: argparse.Namespace, work: Path, report: Report, stack: ExitStack) -> Bench:
    """Make the inputs, find the peers, start the registry; register their clean-up on ``stack``."""
    (work / "out").mkdir(parents=True)
    zeroimage = Zeroimage(args.zeroimage, work / "scratch")
    if "4" in args.only and not TIME.exists():
        report.note(f"{TIME} missing (Debian package time): scenario 4 is skipped")
        args.only.remove("4")
    log(f"work directory {work}; listing this machine's ELF files")
    files = workload.elf_files()
    log(f"making a {args.size_mb} MB binary from {len(files)} ELF files")
    small = workload.make_binary(work / "app", args.size_mb, files)
    big = None
    if "4" in args.only:
        log(f"making a {args.big_mb} MB binary")
        big = workload.make_binary(work / "app-big", args.big_mb, files)
    layout, base = workload.make_base(work, args.zeroimage)
    bench = Bench(work=work, runs=args.runs, zeroimage=zeroimage, small=small, base=base, report=report, big=big)

    missing = [tool for tool in ("umoci", "skopeo") if peers.which(tool) is None]
    if missing or layout is None:
        report.note(f"{' and '.join(missing) or 'umoci'} missing: the umoci+skopeo peer is skipped")
    else:
        bench.umoci = UmociPipeline(layout, work / "scratch")
    if "1" in args.only:
        if peers.which("buildah") is None:
            report.note("buildah missing: the buildah peer is skipped (make bench installs it)")
        else:
            bench.buildah = buildah = Buildah(base, work / "buildah")
            stack.callback(buildah.cleanup)
    if {"2", "3", "4", "6", "8", "9"} & set(args.only):
        if peers.which("docker-registry") is None:
            report.note("docker-registry missing: scenarios 2, 3, 6, 8 and 9, and push memory in 4, are skipped")
        else:
            bench.registry = registry = start_registry(work / "registry")
            stack.callback(registry.close)
            log(f"registry on {registry.host}")
    warm_up(bench)
    return bench


@contextmanager
def python_environment(work: Path) -> Iterator[None]:
    """Let Python programs (zeroimage, ``python3 -c pass``) use compiled bytecode, as installed
    programs do, without writing into the source tree: ``.pyc`` files go under the work directory.
    (``PYTHONDONTWRITEBYTECODE=1`` would make every zeroimage run compile its modules again.)"""
    saved = {name: os.environ.get(name) for name in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def warm_up(bench: Bench) -> None:
    """One untimed build (and push) so that bytecode is compiled and the base's layer is in the
    registry before any timed run: whoever pushes first must not pay for it alone."""
    log("warming up (bytecode, registry)")
    out = bench.out("warm-up.tar")
    bench.zeroimage.archive(workload.BUSYBOX, bench.base, out)
    out.unlink()
    if bench.registry is not None:
        cache = bench.zeroimage.fresh_cache()
        bench.zeroimage.push(workload.BUSYBOX, bench.base, f"{bench.registry.host}/bench:warm-up", cache=cache)
        shutil.rmtree(cache)


def print_context(report: Report, bench: Bench) -> None:
    context = report.context
    lines: list[str] = []
    throughput = context.get("compression_mb_per_s")
    if throughput:
        parts = [f"{name} {value:.0f} MB/s" for name, value in throughput.items() if value]
        lines.append(f"single-file compression of the {bench.small.megabytes:.0f} MB binary: " + ", ".join(parts))
        lines.append(
            "  (zeroimage: a whole FROM-scratch OCI archive, tar + sha256 x2 + compression + write;"
            " the others to /dev/null)"
        )
        compressed = context.get("compressed_mb")
        if compressed:
            lines.append("  archive sizes: " + ", ".join(f"{n} {mb:.1f} MB" for n, mb in compressed.items()))
    sizes = context.get("archive_mb")
    if sizes:
        lines.append("archive size in scenario 1: " + ", ".join(f"{n} {mb:.1f} MB" for n, mb in sizes.items()))
    shares = context.get("foreign_cpu_share")
    if shares:
        parts = [f"{key} {share:.0%}" for key, share in shares.items()]
        lines.append("CPU share taken by other processes during each scenario: " + ", ".join(parts))
        lines.append(f"  load average at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    times = context.get("rss_build_seconds")
    if times:
        for label, by_tool in times.items():
            parts = [f"{n} {s:.2f} s" for n, s in by_tool.items() if s is not None]
            lines.append(f"build time in scenario 4 ({label}, under /usr/bin/time): " + ", ".join(parts))
    if lines:
        print("\ncontext:")
        print("\n".join(f"  {line}" for line in lines))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Interruptible even when started with SIGINT ignored (a background job of a script).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    if not args.zeroimage.exists():
        print(f"bench: {args.zeroimage} not found (make venv, or pass --zeroimage)", file=sys.stderr)
        return 2
    report = Report()
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="zeroimage-bench-"))
    try:
        with ExitStack() as stack:
            stack.enter_context(python_environment(work))
            bench = setup(args, work, report, stack)
            config = settings(args)
            for key in args.only:
                meter = CpuMeter().start()
                try:
                    SCENARIOS[key](bench)
                except ToolError as exc:
                    report.note(f"scenario {key} aborted: {exc}")
                share = report.context.setdefault("foreign_cpu_share", {})[key] = meter.foreign_share()
                if share > 0.05:
                    report.note(
                        f"during scenario {key} other processes used {share:.0%} of the CPUs: timings are noisy"
                    )
    except KeyboardInterrupt:
        print("bench: interrupted; cleaned up", file=sys.stderr)
        return 130
    except (ToolError, RuntimeError, AssertionError) as exc:
        print(f"bench: cannot set up: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    elapsed = time.monotonic() - started
    print(
        f"\nzeroimage vs peers: medians of {args.runs} runs on fresh content "
        f"(5: {STARTUP_RUNS} runs); ratio = zeroimage/peer\n"
    )
    print(report.table())
    print_context(report, bench)
    print(f"\ntotal time {elapsed:.0f} s")
    if args.json:
        report.write_json(args.json, {**config, "elapsed_seconds": elapsed})
        log(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
