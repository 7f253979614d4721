"""Drive real, independent peers (skopeo, umoci, oci-image-tool, runc, apt) from tests.

All helpers raise ``AssertionError`` with the full command, exit code, stdout and stderr when a peer
fails, so a failing test shows what the peer said. ``require()`` skips a test when a peer is missing.

Quirks of the peers on this machine (Debian 12; skopeo 1.9, umoci 0.4.7, oci-image-tool 1.0.0-rc1,
runc 1.1.5, hybrid cgroup v1/v2) are handled here and noted where they matter.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, overload

import pytest

_T = TypeVar("_T", str, bytes)
_SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def which(tool: str) -> str | None:
    """Path of ``tool`` on PATH, also looking in the sbin directories (runc lives in /usr/sbin)."""
    found = shutil.which(tool)
    if found is None:
        found = shutil.which(tool, path=os.pathsep.join(_SBIN_DIRS))
    return found


def require(*tools: str) -> None:
    """Skip the calling test unless every one of ``tools`` is installed."""
    missing = [t for t in tools if which(t) is None]
    if missing:
        pytest.skip(f"missing tool(s): {', '.join(missing)}")


def describe(cmd: Sequence[str], returncode: int | str, stdout: object, stderr: object) -> str:
    """The command, its exit code (or what became of it) and its output, for an assertion message."""

    def text(v: object) -> str:
        if isinstance(v, bytes):
            return v.decode("utf-8", "replace")
        return "" if v is None else str(v)

    return (
        f"command failed: {subprocess.list2cmdline(list(cmd))}\n"
        f"exit code: {returncode}\n"
        f"--- stdout ---\n{text(stdout)}\n"
        f"--- stderr ---\n{text(stderr)}"
    )


def _resolve(cmd: Sequence[str]) -> list[str]:
    argv = [str(c) for c in cmd]
    if argv and os.sep not in argv[0]:
        argv[0] = which(argv[0]) or argv[0]
    return argv


def _environ(env: Mapping[str, str] | None) -> dict[str, str] | None:
    return None if env is None else {**os.environ, **env}


def run(
    cmd: Sequence[str],
    *,
    check: bool = True,
    input: str | None = None,  # noqa: A002 - mirrors subprocess.run
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` capturing text stdout/stderr (UTF-8, undecodable bytes replaced).

    ``env`` is merged over ``os.environ``. With ``check`` (default) a non-zero exit raises
    ``AssertionError`` naming the command, exit code, stdout and stderr; so does a timeout, always.
    """
    done = run_bytes(cmd, check=check, input=None if input is None else input.encode(), env=env, timeout=timeout)
    # as text=True would: UTF-8 (undecodable bytes replaced), universal newlines
    text = [b.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n") for b in (done.stdout, done.stderr)]
    return subprocess.CompletedProcess(done.args, done.returncode, *text)


def run_bytes(
    cmd: Sequence[str],
    *,
    check: bool = True,
    input: bytes | None = None,  # noqa: A002 - mirrors subprocess.run
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[bytes]:
    """Like :func:`run` but with raw bytes in and out (for manifests whose exact bytes matter)."""
    argv = _resolve(cmd)
    try:
        return _checked(
            subprocess.run(
                argv,
                input=input,
                capture_output=True,
                env=_environ(env),
                timeout=timeout,
                stdin=None if input is not None else subprocess.DEVNULL,
            ),
            check,
        )
    except subprocess.TimeoutExpired as e:
        raise AssertionError(describe(argv, f"timed out after {timeout}s", e.stdout, e.stderr)) from None
    except FileNotFoundError as e:
        raise AssertionError(f"command not found: {argv[0]} ({e})") from None


def _checked(proc: subprocess.CompletedProcess[_T], check: bool) -> subprocess.CompletedProcess[_T]:
    if check and proc.returncode != 0:
        raise AssertionError(describe(proc.args, proc.returncode, proc.stdout, proc.stderr))
    return proc


# ---------------------------------------------------------------------------------------- skopeo


@overload
def skopeo_inspect(
    transport_ref: str, *, raw: Literal[True], config: bool = ..., extra: Sequence[str] = ...
) -> bytes: ...
@overload
def skopeo_inspect(
    transport_ref: str, *, raw: Literal[False] = ..., config: bool = ..., extra: Sequence[str] = ...
) -> dict[str, Any]: ...
def skopeo_inspect(
    transport_ref: str, *, raw: bool = False, config: bool = False, extra: Sequence[str] = ()
) -> dict[str, Any] | bytes:
    """``skopeo inspect [--raw] [--config] [extra...] transport_ref``.

    With ``raw`` returns the exact bytes skopeo printed (the manifest, or with ``config`` the
    config blob), so digests can be checked; otherwise the parsed JSON. For ``docker://`` refs
    ``--tls-verify=false`` is added unless ``extra`` already says ``--tls-verify``/``--cert-dir``
    (skopeo does not treat 127.0.0.1 as insecure). Pass ``--creds u:p``, ``--cert-dir DIR``,
    ``--override-arch ...`` etc. through ``extra``.
    """
    require("skopeo")
    cmd = ["skopeo", "inspect"]
    if raw:
        cmd.append("--raw")
    if config:
        cmd.append("--config")
    if transport_ref.startswith("docker://") and not any(a.startswith(("--tls-verify", "--cert-dir")) for a in extra):
        cmd.append("--tls-verify=false")
    cmd += [*extra, transport_ref]
    out = run_bytes(cmd).stdout
    if raw:
        return out
    value: dict[str, Any] = json.loads(out)
    return value


# ---------------------------------------------------------------------------------------- layouts


def digest_of(data: bytes) -> str:
    """The OCI digest (``sha256:HEX``) of ``data``, computed here, apart from zeroimage's code."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def extract_archive(archive: Path, dest: Path) -> Path:
    """Extract an OCI archive (a tar of an image layout) into ``dest`` safely; returns ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    if not (dest / "index.json").is_file():
        raise AssertionError(f"{archive}: no index.json at the top of the archive")
    return dest


def read_index(layout: Path) -> dict[str, Any]:
    """The parsed ``index.json`` of an OCI layout directory."""
    value: dict[str, Any] = json.loads((layout / "index.json").read_text())
    return value


def ref_names(layout: Path) -> list[str]:
    """The ``org.opencontainers.image.ref.name`` annotations in a layout's ``index.json``."""
    return [
        d["annotations"]["org.opencontainers.image.ref.name"]
        for d in read_index(layout).get("manifests", [])
        if "org.opencontainers.image.ref.name" in (d.get("annotations") or {})
    ]


def _validate_ref_arg(ref: str) -> str:
    if ref.startswith(("name=", "digest=", "platform.os=")):
        return ref
    if ref.startswith("sha256:"):
        return f"digest={ref}"
    return f"name={ref}"


def oci_validate_archive(archive: Path, tmp: Path, *, ref: str | None = None) -> None:
    """Validate an OCI archive with ``oci-image-tool validate --type image``; assert it passes.

    The archive is extracted first (this oci-image-tool cannot validate a tar directly). ``ref``
    selects what to validate: a tag (``--ref name=TAG``, which must then be a
    ``org.opencontainers.image.ref.name`` in index.json), a digest (``--ref digest=sha256:...``) or a
    raw ``A=B`` criterion. Without ``ref`` every descriptor of index.json is validated (one image,
    several platform manifests, or a nested index - it descends into indexes). Note: a bare
    ``--ref TAG`` is refused by this version ("each ref must contain two parts"), and layers with
    ``urls`` whose blobs are absent (Windows foreign layers) fail validation.
    """
    require("oci-image-tool")
    layout = extract_archive(archive, Path(tempfile.mkdtemp(prefix="oci-validate-", dir=tmp)))
    cmd = ["oci-image-tool", "validate", "--type", "image"]
    if ref is not None:
        cmd += ["--ref", _validate_ref_arg(ref)]
    proc = run([*cmd, str(layout)], check=False)
    if proc.returncode != 0 or "Validation succeeded" not in proc.stdout + proc.stderr:
        raise AssertionError(
            f"oci-image-tool rejected {archive}\n" + describe(proc.args, proc.returncode, proc.stdout, proc.stderr)
        )


# ---------------------------------------------------------------------------------------- umoci


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _matches(platform: Mapping[str, Any] | None, want: str) -> bool:
    if not platform:
        return False
    have = [platform.get("os", ""), platform.get("architecture", "")]
    parts = want.split("/")
    if len(parts) == 3:
        have.append(platform.get("variant", ""))
    return have == parts


def _select_platform(layout: Path, desc: dict[str, Any], platform: str) -> dict[str, Any]:
    """Descend from ``desc`` through (nested) indexes to the manifest for ``platform``."""
    while desc.get("mediaType") == "application/vnd.oci.image.index.v1+json" or (
        "mediaType" not in desc and "manifests" in _blob_json(layout, desc["digest"])
    ):
        index = _blob_json(layout, desc["digest"])
        candidates = [m for m in index.get("manifests", []) if _matches(m.get("platform"), platform)]
        nested = [m for m in index.get("manifests", []) if m.get("mediaType", "").endswith("index.v1+json")]
        if candidates:
            desc = candidates[0]
        elif len(nested) == 1:
            desc = nested[0]
        else:
            available = [m.get("platform") for m in index.get("manifests", [])]
            raise AssertionError(f"no {platform} manifest in index {desc['digest']}; platforms: {available}")
    return desc


def _blob_json(layout: Path, digest: str) -> dict[str, Any]:
    algorithm, _, hexpart = digest.partition(":")
    value: dict[str, Any] = json.loads((layout / "blobs" / algorithm / hexpart).read_bytes())
    return value


def _single_platform_layout(layout: Path, tag: str, platform: str, dest: Path) -> Path:
    """A copy of ``layout`` (hard links) whose index.json tags just the ``platform`` manifest."""
    index = read_index(layout)
    tagged = [
        d
        for d in index.get("manifests", [])
        if (d.get("annotations") or {}).get("org.opencontainers.image.ref.name") == tag
    ]
    if not tagged and len(index.get("manifests", [])) == 1:
        tagged = index["manifests"]
    if len(tagged) != 1:
        raise AssertionError(f"{layout}: expected one descriptor tagged {tag!r}, ref names: {ref_names(layout)}")
    chosen = dict(_select_platform(layout, tagged[0], platform))
    chosen["annotations"] = {**(chosen.get("annotations") or {}), "org.opencontainers.image.ref.name": tag}
    shutil.copytree(layout, dest, copy_function=_link_or_copy)
    (dest / "index.json").unlink()
    (dest / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [chosen]}))
    return dest


def umoci_unpack(layout_or_archive: Path, tag: str, bundle: Path, *, platform: str | None = None) -> Path:
    """``umoci unpack --image LAYOUT:TAG BUNDLE``; returns ``bundle`` (rootfs/ + config.json).

    Accepts an OCI layout directory or an OCI archive tar (extracted to a temporary layout next to
    ``bundle`` and removed afterwards). ``bundle`` must not exist yet. umoci finds images only by
    the ``org.opencontainers.image.ref.name`` annotation in index.json and cannot pick a platform
    from an index ("tag is ambiguous"), so ``platform`` (``os/arch[/variant]``) makes a hard-linked
    copy of the layout whose index.json tags only that platform's manifest (if index.json holds a
    single untagged entry, that one is used). As root no ``--rootless`` is needed (it is added
    automatically when not root).
    """
    require("umoci")
    bundle = Path(bundle)
    bundle.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{bundle.name}-layout-", dir=bundle.parent))
    try:
        src = Path(layout_or_archive)
        layout = extract_archive(src, scratch / "archive") if src.is_file() else src
        if platform is not None:
            layout = _single_platform_layout(layout, tag, platform, scratch / "platform")
        if tag not in ref_names(layout):
            raise AssertionError(
                f"{src}: no manifest tagged {tag!r} in index.json (ref names: {ref_names(layout)}); "
                "umoci finds images only by their org.opencontainers.image.ref.name annotation"
            )
        cmd = ["umoci", "unpack"]
        if os.geteuid() != 0:
            cmd.append("--rootless")
        run([*cmd, "--image", f"{layout}:{tag}", str(bundle)])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return bundle


# ---------------------------------------------------------------------------------------- runc


def _set_env(current: Sequence[str], overrides: Mapping[str, str]) -> list[str]:
    kept = [e for e in current if e.partition("=")[0] not in overrides]
    return kept + [f"{k}={v}" for k, v in overrides.items()]


def _parse_user(user: int | str) -> dict[str, Any]:
    uid, _, gid = str(user).partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        raise ValueError(f"user must be numeric 'uid' or 'uid:gid' (runc has no passwd lookup): {user!r}")
    return {"uid": int(uid), "gid": int(gid or uid)}


def runc_run(
    bundle: Path,
    *,
    args: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    user: int | str | None = None,
    timeout: float = 60,
    check: bool = True,
    input: str | None = None,  # noqa: A002 - mirrors subprocess.run
) -> subprocess.CompletedProcess[str]:
    """Run the bundle's process under ``runc`` (as root) and return its exit code and output.

    Patches ``bundle/config.json`` for the run (and restores it afterwards, so overrides do not
    leak into the next run of the same bundle): ``process.terminal=false`` always (so output is
    captured), and only if given: ``args`` replaces the whole argv (entrypoint + cmd), ``env``
    sets/overrides variables over the image's environment (like ``docker run -e``), ``cwd``,
    ``user`` (numeric ``uid`` or ``"uid:gid"``). ``input`` is fed to the process's stdin (else
    /dev/null). By default the image's configured process runs unchanged (umoci adds
    only ``TERM=xterm`` to its env). Uses a private ``--root`` state directory and a unique
    container id, and always deletes the container afterwards (also on timeout, after SIGKILL).
    With ``check`` a non-zero exit raises ``AssertionError``.

    On this machine (cgroup v1 + unified v2 hybrid) plain ``runc run`` works: the default
    (relative) cgroup path nests the container under the caller's cgroups. If ``pivot_root`` is
    impossible (rootfs on initramfs) it retries with ``--no-pivot``.
    """
    require("runc")
    bundle = Path(bundle)
    config_path = bundle / "config.json"
    original = config_path.read_text()
    config: dict[str, Any] = json.loads(original)
    process: dict[str, Any] = config.setdefault("process", {})
    process["terminal"] = False
    if args is not None:
        process["args"] = list(args)
    if env is not None:
        process["env"] = _set_env(process.get("env", []), env)
    if cwd is not None:
        process["cwd"] = cwd
    if user is not None:
        process["user"] = {**process.get("user", {}), **_parse_user(user)}
        process["user"].pop("additionalGids", None)
    config_path.write_text(json.dumps(config, indent=2))

    state = Path(tempfile.mkdtemp(prefix="runc-state-"))
    runc = which("runc") or "runc"
    container_id = f"zeroimage-test-{uuid.uuid4().hex[:12]}"
    try:
        for extra in ([], ["--no-pivot"]):
            argv = [runc, "--root", str(state), "run", *extra, "--bundle", str(bundle), container_id]
            try:
                proc = subprocess.run(
                    argv,
                    input=input,
                    stdin=None if input is not None else subprocess.DEVNULL,
                    capture_output=True,
                    text=True,
                    encoding="utf-8",
                    errors="replace",
                    timeout=timeout,
                )
            except subprocess.TimeoutExpired as e:
                subprocess.run([runc, "--root", str(state), "kill", container_id, "KILL"], capture_output=True)
                raise AssertionError(describe(argv, f"timed out after {timeout}s", e.stdout, e.stderr)) from None
            if not extra and proc.returncode != 0 and "pivot_root" in proc.stderr:
                subprocess.run([runc, "--root", str(state), "delete", "--force", container_id], capture_output=True)
                continue
            break
        return _checked(proc, check)
    finally:
        subprocess.run([runc, "--root", str(state), "delete", "--force", container_id], capture_output=True)
        shutil.rmtree(state, ignore_errors=True)
        config_path.write_text(original)


def run_image(
    archive: Path,
    tag: str = "latest",
    *,
    platform: str | None = None,
    bundle: Path | None = None,
    **kw: Any,
) -> subprocess.CompletedProcess[str]:
    """Unpack ``archive:tag`` with umoci (see :func:`umoci_unpack`) and run it with :func:`runc_run`.

    The bundle goes to ``bundle`` (default: a fresh directory next to the archive, removed after
    the run); ``kw`` is passed to :func:`runc_run` (``args``, ``env``, ``cwd``, ``user``, ``timeout``,
    ``check``, ``input``).
    """
    archive = Path(archive)
    owned = bundle is None
    target = bundle or Path(tempfile.mkdtemp(prefix=f".{archive.name}-bundle-", dir=archive.parent)) / "bundle"
    try:
        umoci_unpack(archive, tag, target, platform=platform)
        return runc_run(target, **kw)
    finally:
        if owned:
            shutil.rmtree(target.parent, ignore_errors=True)


# ---------------------------------------------------------------------------------------- arm64


def _is_aarch64_elf(path: Path) -> bool:
    try:
        head = path.read_bytes()[:20]
    except OSError:
        return False
    # ELF magic, 64-bit, little-endian, e_machine == EM_AARCH64 (183)
    return head[:4] == b"\x7fELF" and head[4] == 2 and head[5] == 1 and int.from_bytes(head[18:20], "little") == 183


def arm64_busybox(cache_dir: Path) -> Path | None:
    """The static arm64 busybox of Debian's ``busybox-static:arm64``, cached in ``cache_dir``.

    On first use: ``dpkg --add-architecture arm64`` (if needed), ``apt-get update`` (only if apt does
    not know the package yet), ``apt-get download busybox-static:arm64``, ``dpkg-deb -x``. Returns
    None when that is impossible (no apt/dpkg, not root, no access to the Debian mirror).
    """
    cache_dir = Path(cache_dir)
    target = cache_dir / "busybox-arm64"
    if _is_aarch64_elf(target):
        return target
    if not all(which(t) for t in ("dpkg", "apt-get", "apt-cache", "dpkg-deb")) or os.geteuid() != 0:
        return None
    cache_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="busybox-arm64-", dir=cache_dir))
    try:
        foreign = run(["dpkg", "--print-foreign-architectures"], check=False).stdout.split()
        if "arm64" not in foreign and run(["dpkg", "--add-architecture", "arm64"], check=False).returncode:
            return None
        known = run(["apt-cache", "policy", "busybox-static:arm64"], check=False).stdout
        if "Candidate:" not in known or "Candidate: (none)" in known:
            run(["apt-get", "update", "-qq"], check=False, timeout=300)
        # -o APT::Sandbox::User=root: the _apt user cannot write into our directory.
        proc = subprocess.run(
            [
                which("apt-get") or "apt-get",
                "-qq",
                "-o",
                "APT::Sandbox::User=root",
                "download",
                "busybox-static:arm64",
            ],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=300,
        )
        debs = sorted(work.glob("busybox-static_*_arm64.deb"))
        if proc.returncode != 0 or not debs:
            return None
        if run(["dpkg-deb", "-x", str(debs[0]), str(work / "root")], check=False).returncode:
            return None
        binary = work / "root" / "bin" / "busybox"
        if not _is_aarch64_elf(binary):
            return None
        tmp_target = work / "busybox-arm64"
        shutil.copy2(binary, tmp_target)
        tmp_target.chmod(0o755)
        os.replace(tmp_target, target)
        return target
    except AssertionError:
        return None
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------------------------------- building


def umoci_build(
    layout: Path,
    files: Mapping[str, Path],
    *,
    tag: str = "latest",
    entrypoint: Sequence[str] | None = None,
    cmd: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    workdir: str | None = None,
    user: str | None = None,
    os_name: str = "linux",
    architecture: str = "amd64",
) -> Path:
    """Build a FROM-scratch reference image with umoci only: ``init``/``new``/``insert``/``config``.

    ``files`` maps paths in the image to local files (each becomes one layer, as ``umoci insert``
    does). Creates the layout if needed and returns it; pack it with :func:`pack_layout`.
    """
    require("umoci")
    layout = Path(layout)
    if not (layout / "index.json").exists():
        run(["umoci", "init", "--layout", str(layout)])
    image = f"{layout}:{tag}"
    run(["umoci", "new", "--image", image])
    for target, source in files.items():
        run(["umoci", "insert", "--image", image, str(source), target])
    config = ["umoci", "config", "--image", image, "--os", os_name, "--architecture", architecture]
    if entrypoint is not None:
        config += [a for e in entrypoint for a in ("--config.entrypoint", e)] or ["--clear=config.entrypoint"]
    if cmd is not None:
        config += [a for c in cmd for a in ("--config.cmd", c)] or ["--clear=config.cmd"]
    for key, value in (env or {}).items():
        config += ["--config.env", f"{key}={value}"]
    if workdir is not None:
        config += ["--config.workingdir", workdir]
    if user is not None:
        config += ["--config.user", user]
    run(config)
    run(["umoci", "gc", "--layout", str(layout)])
    return layout


def pack_layout(layout: Path, archive: Path) -> Path:
    """Write an OCI layout directory as an OCI archive tar (``oci-layout``, ``index.json``, ``blobs/``).

    Entries have no ``./`` prefix, like skopeo's archives. Returns ``archive``.
    """
    layout = Path(layout)
    with tarfile.open(archive, "w") as tar:
        for name in ("oci-layout", "index.json", "blobs"):
            tar.add(layout / name, arcname=name)
    return archive
