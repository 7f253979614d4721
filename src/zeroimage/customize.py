"""Dockerfile-equivalent configuration (``--env``, ``--label``, ``--user``, ...), parsed and merged
onto a base config as a Dockerfile would: a new ``--env`` of an existing key replaces it, and its
value expands ``$VAR`` against the environment so far, as ``ENV`` does."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
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
    if not (is_id(port) and len(port) <= 5) or not 1 <= int(port) <= 65535 or proto not in ("tcp", "udp", "sctp"):
        raise UsageError(f"--expose {value!r}: expected PORT[/tcp|udp|sctp] with PORT from 1 to 65535")
    return f"{int(port)}/{proto}"


#: The signals of the Linux image (not of the host zeroimage runs on, which may lack some).
LINUX_SIGNALS = frozenset(
    "SIG" + name
    for name in [
        "HUP",
        "INT",
        "QUIT",
        "ILL",
        "TRAP",
        "ABRT",
        "IOT",
        "BUS",
        "FPE",
        "KILL",
        "USR1",
        "SEGV",
        "USR2",
        "PIPE",
        "ALRM",
        "TERM",
        "STKFLT",
        "CHLD",
        "CLD",
        "CONT",
        "STOP",
        "TSTP",
        "TTIN",
        "TTOU",
        "URG",
        "XCPU",
        "XFSZ",
        "VTALRM",
        "PROF",
        "WINCH",
        "IO",
        "POLL",
        "PWR",
        "SYS",
    ]
)


def parse_signal(value: str) -> str:
    text = value.strip().upper()
    if text.isdigit():
        if not (is_id(text) and len(text) <= 2) or not 1 <= int(text) <= 64:
            raise UsageError(f"--stop-signal {value!r}: signal numbers go from 1 to 64")
        return text
    name = text if text.startswith("SIG") else "SIG" + text
    if name not in LINUX_SIGNALS and not re.match(r"^SIGRTM(IN|AX)([+-]\d+)?$", name):
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


def is_id(text: str) -> bool:
    """A numeric uid or gid: ASCII digits only (``str.isdigit`` takes "²", which int() refuses),
    and few enough of them to convert (Python refuses 4,300 digits; an id has at most 10)."""
    return text.isascii() and text.isdigit() and len(text) <= 20


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
        if len(fields) > 3 and is_id(fields[2]) and names.intersection(fields[3].split(",")):
            gids.add(int(fields[2]))
    return frozenset(gids)


def _passwd_entry(passwd: str | None, user: str) -> list[str] | None:
    """The first /etc/passwd entry for ``user``, a name or a numeric uid, as runc picks it."""
    for line in (passwd or "").splitlines():
        fields = line.split(":")
        if len(fields) > 3 and fields[0] and (fields[0] == user or (is_id(user) and fields[2] == user)):
            return fields
    return None


#: Highest uid or gid a runtime accepts (runc: a signed 32-bit number).
MAX_ID = 2**31 - 1


def valid_id(text: str) -> bool:
    """A uid or gid a runtime takes: numeric (:func:`is_id`), leading zeros allowed, at most
    :data:`MAX_ID`."""
    return is_id(text) and int(text) <= MAX_ID


def _numeric_id(text: str, what: str) -> int:
    if not valid_id(text):
        raise UsageError(f"--user: {what} is not a number from 0 to {MAX_ID}")
    return int(text)


def user_ids(user: str, tree: FileTree) -> tuple[int, int]:
    """The numeric (uid, gid) a runtime will run USER[:GROUP] as in the image ``tree`` holds.

    As runc resolves it: a user name must be in /etc/passwd and gives its uid and gid; a
    numeric user gives the gid of its /etc/passwd entry when it has one, else 0 (root's group);
    a group, by name from /etc/group or numeric, replaces that gid. UsageError when a name is
    unknown or an id is malformed.
    """
    name, _, group = user.partition(":")
    passwd = tree.read_text("/etc/passwd")
    entry = _passwd_entry(passwd, name)
    if is_id(name):
        uid = _numeric_id(name, f"uid {name}")
        gid = int(entry[3]) if entry is not None and valid_id(entry[3]) else 0
    elif entry is None:
        hint = " (add --with users for root, nonroot and nobody)" if passwd is None else ""
        raise UsageError(f"--user: no user {name!r} in the image's /etc/passwd{hint}")
    else:
        uid = _numeric_id(entry[2], f"the uid of {name!r} in the image's /etc/passwd")
        gid = _numeric_id(entry[3], f"the gid of {name!r} in the image's /etc/passwd")
    if group:
        if is_id(group):
            gid = _numeric_id(group, f"gid {group}")
        else:
            found = _lookup(tree.read_text("/etc/group"), group, 2)
            if found is None:
                raise UsageError(f"--user: no group {group!r} in the image's /etc/group")
            gid = _numeric_id(found, f"the gid of group {group!r} in the image's /etc/group")
    return uid, gid


def resolve_user(user: str, tree: FileTree) -> str:
    """USER[:GROUP] as the config's ``User``: names resolved (:func:`user_ids`) to ``uid:gid``;
    numeric ids kept as written (a numeric user alone is how Docker writes it: the runtime
    finds its group). ``tree`` is the filesystem the image will have: the base's files, and any
    the build adds (``--with users``, ``--add``)."""
    name, _, group = user.partition(":")
    if is_id(name) and (not group or is_id(group)):
        return user
    uid, gid = user_ids(user, tree)
    return f"{uid}:{gid}"


#: ``${A:-${B:-${C}}}`` nests this deep at most (a bound on recursion, far beyond real use).
MAX_NESTING = 32
_SPECIAL_PARAMETERS = "@*#?-$!"  # $@, $*, ...: one-character names, never set in an image


def expand_env(value: str, env: Mapping[str, str]) -> str:
    """``value`` with ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
    ``${VAR:+alt}``, ``${VAR+alt}``, ``${VAR:?message}`` and ``${VAR?message}`` expanded
    against ``env``, as a Dockerfile's ``ENV`` does (BuildKit's shell lexer).

    As there: an unset variable is ""; the colon forms treat an empty value as unset; a ``$``
    that starts no name stays (``$``, ``$/``, ``$ ``); a name is letters, digits and ``_``
    (``$1`` and ``$@`` are names too, never set); defaults nest (``${A:-${B}}``); an expanded
    value is not expanded again. ``\\$`` is a literal dollar and ``\\\\`` a backslash (inside
    ``${...}`` also ``\\}``); any other backslash stays. Unlike a Dockerfile, quotes are kept as
    they are: the shell that ran zeroimage has already removed its own, and a value such as
    ``{"a": 1}`` must keep its quotes. The pattern forms ``${VAR#…}``, ``${VAR%…}`` and
    ``${VAR/…}`` are refused rather than half done.

    UsageError for a malformed substitution; its message never shows the value (it may be a
    secret), only what is wrong and where.
    """
    return _Expander(value, env).run()


class _Expander:
    """One pass over one value: ``pos`` moves forward only, so the cost is linear."""

    def __init__(self, text: str, env: Mapping[str, str]) -> None:
        self.text = text
        self.env = env
        self.pos = 0

    def fail(self, why: str, at: int) -> UsageError:
        return UsageError(f"{why} (at character {at + 1})")

    def run(self) -> str:
        return self.word(stop=None, depth=0, opened=0)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def word(self, stop: str | None, depth: int, opened: int) -> str:
        """Text up to ``stop`` (consumed) or the end, expanding what it holds; ``opened`` is
        where the ``${`` that ``stop`` closes began."""
        out: list[str] = []
        escapable = "$\\" + (stop or "")
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == stop:
                self.pos += 1
                return "".join(out)
            if ch == "\\" and self.pos + 1 < len(self.text) and self.text[self.pos + 1] in escapable:
                out.append(self.text[self.pos + 1])
                self.pos += 2
            elif ch == "$":
                out.append(self.dollar(depth))
            else:
                out.append(ch)
                self.pos += 1
        if stop is not None:
            raise self.fail("a '${' has no closing '}'", opened)
        return "".join(out)

    def name(self) -> str:
        start = self.pos
        first = self.peek()
        if first.isdecimal():  # $1, $10: positional parameters
            while self.peek().isdecimal():
                self.pos += 1
        elif first and first in _SPECIAL_PARAMETERS:
            self.pos += 1
        else:
            while (ch := self.peek()) and (ch.isalpha() or ch.isdecimal() or ch == "_"):
                self.pos += 1
        return self.text[start : self.pos]

    def dollar(self, depth: int) -> str:
        start = self.pos
        self.pos += 1
        if self.peek() != "{":
            name = self.name()
            return self.env.get(name, "") if name else "$"
        if depth >= MAX_NESTING:
            raise self.fail(f"substitutions nest more than {MAX_NESTING} deep", start)
        self.pos += 1
        if not self.peek():
            raise self.fail("a '${' has no closing '}'", start)
        if self.peek() in ("{", "}", ":"):
            raise self.fail("bad substitution: '${' must be followed by a variable name", start)
        name = self.name()
        op = self.peek()
        self.pos += 1
        if op == "}":
            return self.env.get(name, "")
        colon = op == ":"
        if colon:
            op = self.peek()
            self.pos += 1
        if op in ("-", "+", "?"):
            word = self.word(stop="}", depth=depth + 1, opened=start)
            value = self.env.get(name)
            if value is None or (colon and not value):
                if op == "-":
                    return word
                if op == "+":
                    return ""
                why = word or f"is not allowed to be {'unset' if value is None else 'empty'}"
                raise self.fail(f"${{{name}}}: {why}", start)
            return word if op == "+" else value
        if not op:
            raise self.fail("a '${' has no closing '}'", start)
        if op in ("#", "%", "/"):
            raise self.fail(f"the pattern substitution ${{{name}{op}...}} is not supported", start)
        raise self.fail(f"bad substitution: unknown operator {op!r} after ${{{name}", start)


def apply_changes(config: ImageConfig, changes: ConfigChanges, tree: FileTree | None) -> ImageConfig:
    """``config`` with ``changes`` applied as the Dockerfile instructions they stand for.

    Each ``--env`` value is expanded (:func:`expand_env`) against the base's Env and the
    ``--env`` before it, so ``--env 'PATH=/opt/bin:$PATH'`` extends the base's PATH and
    ``--env A=1 --env B=$A`` sets B to 1.
    """
    container = config.container
    fields: dict[str, object] = {}
    if changes.env:
        env = [str(item) for item in container.get("Env") or []]
        values = {key: value for key, _, value in (item.partition("=") for item in env)}
        for key, raw in changes.env:
            try:
                value = expand_env(raw, values)
            except UsageError as exc:
                raise UsageError(f"--env {key}: {exc.message}") from None
            # As BuildKit's ENV: a variable the image has keeps its place (its first, should the
            # base list it twice), with its new value; a new one goes at the end.
            keys = [item.partition("=")[0] for item in env]
            if key in keys:
                env[keys.index(key)] = f"{key}={value}"
            else:
                env.append(f"{key}={value}")
            values[key] = value
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


def history_of(changes: ConfigChanges, entrypoint: str) -> list[str]:
    """The history lines of the config changes, as ``docker history`` shows a Dockerfile's
    (BuildKit's spelling), in a Dockerfile's usual order; the entrypoint is always set."""
    lines = []
    if changes.env:
        lines.append("ENV " + " ".join(f"{key}={value}" for key, value in changes.env))
    if changes.labels:
        lines.append("LABEL " + " ".join(f"{key}={value}" for key, value in changes.labels))
    if changes.expose:
        lines.append("EXPOSE map[" + " ".join(f"{port}:{{}}" for port in changes.expose) + "]")
    if changes.workdir is not None:
        lines.append(f"WORKDIR {changes.workdir}")
    if changes.user is not None:
        lines.append(f"USER {changes.user}")
    if changes.stop_signal is not None:
        lines.append(f"STOPSIGNAL {changes.stop_signal}")
    lines.append(f"ENTRYPOINT {json.dumps([entrypoint])}")
    if changes.cmd:
        lines.append(f"CMD {json.dumps(list(changes.cmd), ensure_ascii=False)}")
    return lines
