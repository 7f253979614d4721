"""Registry credentials where Docker and Podman keep them.

Lookup for a registry (``docker.io``, ``localhost:5000``), first match wins:

1. Docker's ``config.json`` (``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``):
   ``credHelpers[registry]``, else ``credsStore``, runs ``docker-credential-NAME``; if that helper
   has nothing for the registry, the ``auths`` entry is used (``auth`` is base64 ``user:password``,
   ``identitytoken`` an OAuth2 refresh token).
2. Podman's ``auth.json``: ``$REGISTRY_AUTH_FILE``, else ``$XDG_RUNTIME_DIR/containers/auth.json``;
   then ``$XDG_CONFIG_HOME/containers/auth.json`` (``~/.config/containers/auth.json``).

``auths`` keys match after normalising (``https://host/v1/``, ``http://host``, ``host``); Docker Hub
is ``https://index.docker.io/v1/`` (also ``index.docker.io``, ``registry-1.docker.io``, ``docker.io``).
Storing and erasing go through the configured helper, else ``auths`` in config.json, which is
rewritten atomically with mode 0600 and every key this module does not know kept as it was.

Helpers speak Docker's credential-helper protocol: ``get``/``erase`` read the server URL on stdin,
``store`` reads ``{"ServerURL", "Username", "Secret"}``; ``get`` prints the same object, with
Username ``<token>`` when Secret is an identity token. No error message ever contains a secret.
A helper that has not finished after :data:`HELPER_TIMEOUT` (30) seconds is stopped (killed) and
reported, and so is one that prints more than :data:`MAX_HELPER_OUTPUT` (1 MiB): a keychain
prompt nobody answers, or a broken helper, costs half a minute and one line, never the build.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from zeroimage.errors import CredentialError
from zeroimage.reference import DOCKER_HUB, DOCKER_HUB_CREDENTIAL_KEY

HELPER_PREFIX = "docker-credential-"
TOKEN_USERNAME = "<token>"  # a helper's Username when its Secret is an identity token
_NOT_FOUND = "credentials not found"  # "credentials not found in native keychain"
_HUB_HOSTS = frozenset({DOCKER_HUB, "index.docker.io", "registry-1.docker.io"})
_SECRET_FIELDS = ("auth", "username", "password", "identitytoken", "registrytoken")
#: Seconds a credential helper may take before it is stopped.
HELPER_TIMEOUT = 30.0
#: The most a credential helper may print (on stdout, and on stderr) before it is stopped.
MAX_HELPER_OUTPUT = 1 << 20


def docker_config_dir(env: Mapping[str, str]) -> Path | None:
    """Docker's config folder (the CLI's ``config.Dir``): ``$DOCKER_CONFIG``, else ``~/.docker``;
    None without a home. ``env`` stands in for the environment: only ``os.environ`` itself falls
    back to the password database when ``HOME`` is not set."""
    if directory := env.get("DOCKER_CONFIG", ""):
        return Path(directory)
    home = _home(env)
    return Path(home) / ".docker" if home else None


def _home(env: Mapping[str, str]) -> str:
    home = env.get("HOME", "")
    if not home and env is os.environ:
        expanded = os.path.expanduser("~")
        home = "" if expanded == "~" else expanded
    return home


@dataclass(frozen=True, repr=False)
class Credential:
    """A user name and password, or an identity token (sent as refresh_token to the token server)."""

    username: str = ""
    password: str = ""
    identity_token: str = ""

    def __repr__(self) -> str:
        def hidden(value: str) -> str:
            return "'***'" if value else "''"

        return (
            f"Credential(username={self.username!r}, password={hidden(self.password)}, "
            f"identity_token={hidden(self.identity_token)})"
        )

    __str__ = __repr__


def registry_of_key(key: str) -> str | None:
    """The registry a config key names (``https://index.docker.io/v1/`` → ``docker.io``), or None for
    a key scoped below a registry (Podman's ``quay.io/team``), which no registry-wide lookup matches."""
    value = key.strip()
    has_scheme = False
    for scheme in ("https://", "http://"):
        if value.lower().startswith(scheme):
            value, has_scheme = value[len(scheme) :], True
            break
    host, _, path = value.partition("/")
    if not host or (not has_scheme and path.strip("/") not in ("", "v1", "v2")):
        return None
    host = host.lower()
    return DOCKER_HUB if host in _HUB_HOSTS else host


def helper_server_url(registry: str) -> str:
    """What a helper gets as ServerURL, and the config.json key: Docker Hub's legacy URL, else the registry."""
    return DOCKER_HUB_CREDENTIAL_KEY if registry == DOCKER_HUB else registry


class CredentialStore:
    """Reads, stores and erases credentials as ``docker login``/``podman login`` do.

    ``env`` stands in for the environment (``DOCKER_CONFIG``, ``HOME``, ``REGISTRY_AUTH_FILE``,
    ``XDG_RUNTIME_DIR``, ``XDG_CONFIG_HOME``, ``PATH``); helpers run with it as their environment.
    """

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env: Mapping[str, str] = os.environ if env is None else env

    # -- public API --------------------------------------------------------------------------------

    def get(self, registry: str) -> Credential | None:
        """The credential for ``registry``, or None when nothing is configured for it."""
        registry = _normalise(registry)
        path = self.docker_config_path()
        if path is not None:
            doc = _load_json(path)
            if doc is not None:
                helper = _helper_for(doc, registry, path)
                if helper:
                    credential = self._helper_get(helper, registry)
                    if credential is not None:
                        return credential
                credential = _auths_get(doc, registry, path)
                if credential is not None:
                    return credential
        for auth_file in self.podman_auth_paths():
            doc = _load_json(auth_file)
            if doc is not None:
                credential = _auths_get(doc, registry, auth_file)
                if credential is not None:
                    return credential
        return None

    def store(self, registry: str, credential: Credential) -> str:
        """Store ``credential`` for ``registry``; returns where it went, for the user to read."""
        registry = _normalise(registry)
        path = self.docker_config_path()
        if path is None:
            raise CredentialError(f"cannot store credentials for {registry}: neither DOCKER_CONFIG nor HOME is set")
        doc = _load_json(path) or {}
        helper = _helper_for(doc, registry, path)
        if helper:
            if credential.identity_token:
                username, secret = TOKEN_USERNAME, credential.identity_token
            else:
                username, secret = credential.username, credential.password
            payload = json.dumps({"ServerURL": helper_server_url(registry), "Username": username, "Secret": secret})
            secrets = (credential.password, credential.identity_token)
            if self._run_helper(helper, "store", registry, payload, secrets) is None:
                raise CredentialError(f"credential helper {helper!r} could not store credentials for {registry}")
            return f"credential helper {helper!r}"
        auths = _section(doc, "auths", path)
        key = helper_server_url(registry)
        old = auths.get(key)
        entry = {k: v for k, v in old.items() if k not in _SECRET_FIELDS} if isinstance(old, dict) else {}
        if credential.username or credential.password:
            entry["auth"] = base64.b64encode(f"{credential.username}:{credential.password}".encode()).decode()
        if credential.identity_token:
            entry["identitytoken"] = credential.identity_token
        auths[key] = entry
        doc["auths"] = auths
        _write_json(path, doc)
        return str(path)

    def erase(self, registry: str) -> bool:
        """Remove the credentials for ``registry`` from the helper and from config.json's ``auths``.

        True if anything was removed. Podman's auth.json is left alone (``podman logout`` owns it).
        """
        registry = _normalise(registry)
        path = self.docker_config_path()
        doc = None if path is None else _load_json(path)
        if path is None or doc is None:
            return False
        removed = False
        helper = _helper_for(doc, registry, path)
        if helper:
            removed = self._run_helper(helper, "erase", registry, helper_server_url(registry)) is not None
        auths = _section(doc, "auths", path)
        keys = [key for key in auths if registry_of_key(key) == registry]
        if keys:
            for key in keys:
                del auths[key]
            doc["auths"] = auths
            _write_json(path, doc)
            removed = True
        return removed

    # -- where things are --------------------------------------------------------------------------

    def docker_config_path(self) -> Path | None:
        """``config.json`` in :func:`docker_config_dir` (None without one)."""
        directory = docker_config_dir(self._env)
        return directory / "config.json" if directory is not None else None

    def podman_auth_paths(self) -> list[Path]:
        """Podman's auth files, in the order containers/image reads them."""
        paths: list[Path] = []
        if auth_file := self._env.get("REGISTRY_AUTH_FILE"):
            paths.append(Path(auth_file))
        elif runtime_dir := self._env.get("XDG_RUNTIME_DIR"):
            paths.append(Path(runtime_dir) / "containers" / "auth.json")
        home = _home(self._env)
        config_home = self._env.get("XDG_CONFIG_HOME") or (str(Path(home) / ".config") if home else "")
        if config_home:
            paths.append(Path(config_home) / "containers" / "auth.json")
        return paths

    # -- credential helpers ------------------------------------------------------------------------

    def _helper_get(self, helper: str, registry: str) -> Credential | None:
        output = self._run_helper(helper, "get", registry, helper_server_url(registry))
        if output is None:
            return None
        malformed = CredentialError(f"credential helper {helper!r} sent malformed output for {registry}")
        try:
            reply = json.loads(output)
        except (ValueError, RecursionError):
            raise malformed from None
        if not isinstance(reply, dict):
            raise malformed
        username, secret = reply.get("Username") or "", reply.get("Secret") or ""
        if not isinstance(username, str) or not isinstance(secret, str):
            raise malformed
        if username == TOKEN_USERNAME:
            return Credential(identity_token=secret) if secret else None
        if not username and not secret:
            return None
        return Credential(username=username, password=secret)

    def _run_helper(
        self, helper: str, action: str, registry: str, stdin: str, secrets: Iterable[str] = ()
    ) -> str | None:
        """Run ``docker-credential-HELPER ACTION``; its stdout, or None if it has no credentials."""
        program = HELPER_PREFIX + helper
        if any(c in helper for c in "/\\\0") or helper in (".", ".."):
            raise CredentialError(f"invalid credential helper name {helper[:100]!r} for {registry}")
        # Only absolute PATH entries: like Go's exec.LookPath, never run a helper from the current directory.
        search = [entry for entry in self._env.get("PATH", os.defpath).split(os.pathsep) if os.path.isabs(entry)]
        executable = shutil.which(program, path=os.pathsep.join(search)) if search else None
        if executable is None:
            raise CredentialError(f"credential helper {helper!r} for {registry}: {program} is not on PATH")
        env = None if self._env is os.environ else dict(self._env)
        returncode, out, err = _run_bounded([executable, action], stdin.encode(), env, helper, registry, program)
        stdout = out.decode("utf-8", "replace")
        if returncode == 0:
            return stdout
        message = stdout.strip() or err.decode("utf-8", "replace").strip()
        if _NOT_FOUND in message.lower():
            return None
        detail = _first_line(message, secrets)
        raise CredentialError(
            f"credential helper {helper!r} could not {action} credentials for {registry} "
            f"(exit status {returncode}){': ' + detail if detail else ''}"
        )


def _run_bounded(
    argv: list[str], stdin: bytes, env: dict[str, str] | None, helper: str, registry: str, program: str
) -> tuple[int, bytes, bytes]:
    """Run a helper: its exit status, stdout and stderr. It is stopped (killed) when it takes longer
    than HELPER_TIMEOUT or prints more than MAX_HELPER_OUTPUT on either stream. Its two streams
    are read by two threads (pipes cannot be polled on every platform)."""
    import subprocess  # helpers are rare: not loaded for every push
    import threading
    import time

    who = f"credential helper {helper!r} for {registry}"
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise CredentialError(f"{who}: cannot run {program}: {why}") from None
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    deadline = time.monotonic() + HELPER_TIMEOUT
    outputs = (bytearray(), bytearray())
    changed = threading.Condition()
    state = {"ended": 0, "overflow": False}

    def drain(stream: IO[bytes], output: bytearray) -> None:
        try:
            while chunk := stream.read1(65536):  # type: ignore[attr-defined]
                output += chunk
                if len(output) > MAX_HELPER_OUTPUT:
                    with changed:
                        state["overflow"] = True
                        changed.notify_all()
                    return
        except (OSError, ValueError):
            pass  # the helper was stopped and its pipe closed
        finally:
            with changed:
                state["ended"] += 1
                changed.notify_all()

    readers = [
        threading.Thread(target=drain, args=(stream, output), daemon=True, name="credential-helper")
        for stream, output in zip((proc.stdout, proc.stderr), outputs, strict=True)
    ]
    try:
        for reader in readers:
            reader.start()
        with contextlib.suppress(OSError):  # a helper that never reads its input, or exits first
            proc.stdin.write(stdin)  # a server URL or a small JSON object: within the pipe's buffer
            proc.stdin.close()
        with changed:
            done = changed.wait_for(lambda: state["overflow"] or state["ended"] == 2, HELPER_TIMEOUT)
        if state["overflow"]:
            raise CredentialError(f"{who} printed more than {MAX_HELPER_OUTPUT} bytes; stopped it")
        if not done:
            raise CredentialError(f"{who} did not finish within {HELPER_TIMEOUT:.0f} s; stopped it")
        try:
            returncode = proc.wait(max(deadline - time.monotonic(), 0.1))  # its output has ended: it is exiting
        except subprocess.TimeoutExpired:
            raise CredentialError(f"{who} did not finish within {HELPER_TIMEOUT:.0f} s; stopped it") from None
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        for reader in readers:
            reader.join(1.0)  # at its pipe's end once the helper is gone (unless a child of it holds it)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            with contextlib.suppress(OSError):
                stream.close()
    return returncode, bytes(outputs[0]), bytes(outputs[1])


def _normalise(registry: str) -> str:
    return registry_of_key(registry) or registry.strip().lower()


def _first_line(text: str, secrets: Iterable[str]) -> str:
    """The first line of a helper's message, or "" if it might contain a secret.

    Lines end at a newline alone: ``str.splitlines`` would also end one at a carriage return or a
    C1 control, dropping the rest of the line from the message (the CLI escapes what it shows)."""
    line = next((line.strip() for line in text.split("\n") if line.strip()), "")
    for secret in secrets:
        if secret and (secret in line or json.dumps(secret)[1:-1] in line):
            return ""
    return line[:200]


# -- config files ----------------------------------------------------------------------------------


def _load_json(path: Path) -> dict[str, Any] | None:
    """A config file as a dict, None if it does not exist; CredentialError names a bad one."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise CredentialError(f"cannot read {path}: {why}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CredentialError(f"{path}: not UTF-8 text") from None
    if not text.strip():
        return {}
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CredentialError(f"{path}: malformed JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except (ValueError, RecursionError):
        raise CredentialError(f"{path}: malformed JSON") from None
    if not isinstance(doc, dict):
        raise CredentialError(f"{path}: expected a JSON object")
    return doc


def _section(doc: dict[str, Any], name: str, path: Path) -> dict[str, Any]:
    value = doc.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CredentialError(f"{path}: {name!r} must be a JSON object")
    return value


def _best_key(keys: Iterable[str], registry: str) -> list[str]:
    """The keys naming ``registry``: the exact one Docker writes first, then the rest in file order."""
    matching = [key for key in keys if registry_of_key(key) == registry]
    preferred = helper_server_url(registry)
    return sorted(matching, key=lambda key: key != preferred)


def _helper_for(doc: dict[str, Any], registry: str, path: Path) -> str:
    """The helper for ``registry``: ``credHelpers`` entry, else ``credsStore``, else ""."""
    helpers = _section(doc, "credHelpers", path)
    keys = _best_key(helpers, registry)
    helper = helpers[keys[0]] if keys else doc.get("credsStore")
    if helper is None:
        return ""
    if not isinstance(helper, str):
        raise CredentialError(f"{path}: the credential helper for {registry} must be a string")
    return helper.strip()


def _auths_get(doc: dict[str, Any], registry: str, path: Path) -> Credential | None:
    auths = _section(doc, "auths", path)
    for key in _best_key(auths, registry):
        entry = auths[key]
        if entry is None:
            continue
        if not isinstance(entry, dict):
            raise CredentialError(f"{path}: auths[{key[:100]!r}] must be a JSON object")
        fields: dict[str, str] = {}
        for name in ("auth", "username", "password", "identitytoken"):
            value = entry.get(name) or ""
            if not isinstance(value, str):
                raise CredentialError(f"{path}: auths[{key[:100]!r}].{name} must be a string")
            fields[name] = value
        username, password = fields["username"], fields["password"]
        if fields["auth"]:
            username, password = _decode_auth(fields["auth"], path, key)
        if username or password or fields["identitytoken"]:
            return Credential(username, password, fields["identitytoken"])
    return None


def _decode_auth(auth: str, path: Path, key: str) -> tuple[str, str]:
    bad = CredentialError(f"{path}: auths[{key[:100]!r}].auth is not base64 of USER:PASSWORD")
    raw = "".join(auth.split())
    raw += "=" * (-len(raw) % 4)
    try:
        decoded = base64.b64decode(raw, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise bad from None
    username, colon, password = decoded.partition(":")
    if not colon or not username:
        raise bad
    return username, password.strip("\0")


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    """Replace ``path`` (through a symlink) atomically: temp file, fsync, mode 0600, rename."""
    target = Path(os.path.realpath(path))
    try:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:  # mkstemp made it 0600: ours alone
                json.dump(doc, file, indent="\t")
                file.write("\n")
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        with contextlib.suppress(OSError):
            dir_fd = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    except (OSError, ValueError, RecursionError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise CredentialError(f"cannot write {path}: {why}") from None
