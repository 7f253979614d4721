"""Dockerfile-equivalent configuration (``--env``, ``--label``, ``--user``, ...), parsed and merged
onto a base config as a Dockerfile would: a new ``--env`` of an existing key replaces it."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterable
from dataclasses import dataclass

from zeroimage.errors import UsageError
from zeroimage.oci import ImageConfig
from zeroimage.rootfs import FileTree

_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class ConfigChanges:
    env: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()
    workdir: str | None = None
    user: str | None = None
    cmd: tuple[str, ...] = ()
    expose: tuple[str, ...] = ()
    stop_signal: str | None = None

    @property
    def user_needs_lookup(self) -> bool:
        return self.user is not None and not all(p.isdigit() for p in self.user.split(":"))


def parse_pairs(values: Iterable[str], flag: str, env: bool = False) -> tuple[tuple[str, str], ...]:
    pairs = []
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} {value!r}: expected KEY=VALUE")
        if env and not _ENV_KEY.match(key):
            raise UsageError(f"{flag} {value!r}: {key!r} is not a valid environment variable name")
        pairs.append((key, val))
    return tuple(pairs)


def parse_port(value: str) -> str:
    port, _, proto = value.partition("/")
    proto = (proto or "tcp").lower()
    if not port.isdigit() or not 1 <= int(port) <= 65535 or proto not in ("tcp", "udp", "sctp"):
        raise UsageError(f"--expose {value!r}: expected PORT[/tcp|udp|sctp] with PORT from 1 to 65535")
    return f"{int(port)}/{proto}"


def parse_signal(value: str) -> str:
    text = value.strip().upper()
    if text.isdigit():
        if not 1 <= int(text) <= 64:
            raise UsageError(f"--stop-signal {value!r}: signal numbers go from 1 to 64")
        return text
    name = text if text.startswith("SIG") else "SIG" + text
    if name not in signal.Signals.__members__ and not re.match(r"^SIGRTM(IN|AX)([+-]\d+)?$", name):
        raise UsageError(f"--stop-signal {value!r}: not a signal name (e.g. SIGTERM, SIGINT, SIGQUIT)")
    return name


def parse_workdir(value: str) -> str:
    if not value.startswith("/"):
        raise UsageError(f"--workdir {value!r}: must be an absolute path")
    return value


def parse_user(value: str) -> str:
    user, _, group = value.partition(":")
    if not user or (":" in value and not group):
        raise UsageError(f"--user {value!r}: expected USER[:GROUP] (names or numeric ids)")
    return value


def _is_id(text: str) -> bool:
    """A numeric uid or gid: ASCII digits only (``str.isdigit`` takes "²", which int() refuses)."""
    return text.isascii() and text.isdigit()


def _lookup(table: str | None, name: str, column: int) -> str | None:
    for line in (table or "").splitlines():
        fields = line.split(":")
        if len(fields) > column and fields[0] == name:
            return fields[column]
    return None


def supplementary_gids(uid: int, tree: FileTree) -> frozenset[int]:
    """The groups the image's /etc/group lists the user with ``uid`` as a member of (by any
    name /etc/passwd gives that uid), as a runtime (runc) adds them to the process."""
    names = {
        fields[0]
        for line in (tree.read_text("/etc/passwd") or "").splitlines()
        if len(fields := line.split(":")) > 2 and fields[0] and fields[2] == str(uid)
    }
    gids: set[int] = set()
    for line in (tree.read_text("/etc/group") or "").splitlines():
        fields = line.split(":")
        if len(fields) > 3 and _is_id(fields[2]) and names.intersection(fields[3].split(",")):
            gids.add(int(fields[2]))
    return frozenset(gids)


def resolve_user(user: str, tree: FileTree) -> str:
    """USER[:GROUP] with names looked up in the image's /etc/passwd and /etc/group → ``uid:gid``."""
    name, _, group = user.partition(":")
    passwd = tree.read_text("/etc/passwd")
    if name.isdigit():
        uid = name
        gid = None
    else:
        uid = _lookup(passwd, name, 2) or ""
        gid = _lookup(passwd, name, 3)
        if not uid:
            hint = " (add --with users for root, nonroot and nobody)" if passwd is None else ""
            raise UsageError(f"--user: no user {name!r} in the image's /etc/passwd{hint}")
    if group:
        if group.isdigit():
            gid = group
        else:
            gid = _lookup(tree.read_text("/etc/group"), group, 2)
            if gid is None:
                raise UsageError(f"--user: no group {group!r} in the image's /etc/group")
    return f"{uid}:{gid}" if gid is not None else uid


def apply_changes(config: ImageConfig, changes: ConfigChanges, tree: FileTree | None) -> ImageConfig:
    container = config.container
    fields: dict[str, object] = {}
    if changes.env:
        env = list(container.get("Env") or [])
        for key, value in changes.env:
            env = [item for item in env if item.partition("=")[0] != key]
            env.append(f"{key}={value}")
        fields["Env"] = env
    if changes.labels:
        fields["Labels"] = {**(container.get("Labels") or {}), **dict(changes.labels)}
    if changes.workdir is not None:
        fields["WorkingDir"] = changes.workdir
    if changes.user is not None:
        fields["User"] = resolve_user(changes.user, tree) if tree is not None else changes.user
    if changes.cmd:
        fields["Cmd"] = list(changes.cmd)
    if changes.expose:
        fields["ExposedPorts"] = {**(container.get("ExposedPorts") or {}), **{p: {} for p in changes.expose}}
    if changes.stop_signal is not None:
        fields["StopSignal"] = changes.stop_signal
    return config.with_container(**fields) if fields else config
