"""The terminal shows text, never commands: what came from outside — a registry's error message,
an image's labels, environment, entrypoint and history, a file name, a credential helper's
complaint — reaches stderr and stdout with its control characters escaped, on every path
(errors, warnings, -v, inspect, the printed lines); --json stays exact JSON, its values intact.

Each attack here rewrites the line above, sets the window title, rings the bell, or reorders the
text (a C1 CSI, a right-to-left override): printed raw, ``Login Succeeded`` would appear where
zeroimage said something else."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pytest

from tests.conftest import Zeroimage
from tests.support import images
from tests.support.cli import Result
from tests.support.hostile_registry import ESCAPES, HostileRegistry
from tests.support.images import text_file

#: What no byte zeroimage prints for people may hold: the attack's controls, raw.
RAW = ("\x1b", "\x07", "\r", "\x9b", "\u202e")
#: How they look once escaped.
SHOWN = "\\x1b[2K\\x1b[1A\\rLogin Succeeded\\x1b]0;owned\\x07 \\x9b31m red \\u202eevil"


def shown_not_obeyed(result: Result) -> None:
    """Nothing raw on either stream, and the attack shown, escaped, somewhere."""
    for stream in (result.stdout, result.stderr):
        assert not [c for c in RAW if c in stream], result.describe()
    assert SHOWN in result.stdout + result.stderr, result.describe()


@pytest.fixture
def escaping_registry() -> HostileRegistry:
    with HostileRegistry("escape-errors", auth="none") as registry:
        registry.seed("base", "1")
        yield registry


@pytest.mark.parametrize("command", ["inspect", "build", "pull"])
def test_a_registrys_error_message_is_shown_escaped(
    escaping_registry: HostileRegistry, zeroimage: Zeroimage, tmp_path: Path, command: str
) -> None:
    images.tiny_program(tmp_path / "app")
    where = f"{escaping_registry.host}/missing:1"
    args = {
        "inspect": ("inspect", where),
        "build": ("build", "-v", "--push", f"{escaping_registry.host}/app:v1", "--from", where, "app"),
        "pull": ("build", "-o", "out.tar", "--from", where, "app"),
    }[command]
    result = zeroimage(*args, check=False)
    assert result.returncode == 1
    shown_not_obeyed(result)


def test_what_an_image_says_of_itself_is_shown_escaped_and_exact_in_json(zeroimage: Zeroimage, tmp_path: Path) -> None:
    """Labels, environment, entrypoint, user and history of a base someone else made."""
    container = {
        "Labels": {"note": ESCAPES},
        "Env": [f"X={ESCAPES}"],
        "Entrypoint": [f"/bin/{ESCAPES}"],
        "User": ESCAPES,
        "WorkingDir": f"/{ESCAPES}",
    }
    images.write_layout(tmp_path / "base", [[text_file("etc/motd", "hi\n")]], container=container)
    shown_not_obeyed(zeroimage("inspect", "oci:base:latest"))
    exact = zeroimage("inspect", "--json", "oci:base:latest")
    assert not [c for c in RAW if c in exact.stdout]  # a terminal showing the JSON is safe too
    config = json.loads(exact.stdout)["images"][0]["config"]["config"]
    assert config["Labels"]["note"] == ESCAPES and config["User"] == ESCAPES  # the values, exactly

    images.tiny_program(tmp_path / "app")
    built = zeroimage("build", "--json", "--from", "oci:base:latest", "-o", "out.tar", "app")
    assert not [c for c in RAW if c in built.stdout] and json.loads(built.stdout)["digest"].startswith("sha256:")


def test_a_file_name_is_shown_escaped_in_errors_progress_and_the_printed_line(
    zeroimage: Zeroimage, tmp_path: Path
) -> None:
    program = images.tiny_program(tmp_path / f"app{ESCAPES}")
    built = zeroimage("build", program.name)  # not a terminal: one line per step, naming the program
    shown_not_obeyed(built)
    assert built.stdout.startswith(f"oci-archive:app{SHOWN}.tar:latest  # sha256:")  # the output's name
    tree = tmp_path / "tree"
    tree.mkdir()
    os.mkfifo(tree / f"pipe{ESCAPES}")
    refused = zeroimage("build", "--add", "tree:/srv", "-o", "x.tar", program.name, check=False)
    assert refused.returncode == 1
    shown_not_obeyed(refused)


def test_a_credential_helpers_complaint_is_shown_escaped(zeroimage: Zeroimage, tmp_path: Path) -> None:
    """A registry asks for credentials; docker-credential-evil writes an escape-laden complaint
    and fails. What zeroimage says of it is one line naming the helper, the complaint escaped."""
    helper = tmp_path / "bin" / "docker-credential-evil"
    helper.parent.mkdir()
    complaint = tmp_path / "complaint"
    complaint.write_bytes(ESCAPES.encode())  # the raw controls, as a helper would write them
    helper.write_text(f"#!/bin/sh\ncat {shlex.quote(str(complaint))} >&2\nexit 1\n")
    helper.chmod(0o755)
    (tmp_path / ".docker").mkdir(exist_ok=True)
    (tmp_path / ".docker" / "config.json").write_text(json.dumps({"credsStore": "evil"}))
    images.tiny_program(tmp_path / "app")
    env = {"PATH": f"{helper.parent}:{os.environ['PATH']}"}
    with HostileRegistry("honest", auth="basic") as registry:
        host = registry.host
        result = zeroimage("build", "--push", f"{host}/app:v1", "app", env=env, check=False)
    assert result.returncode == 1, result.describe()
    shown_not_obeyed(result)
    errors = [line for line in result.stderr.splitlines() if line.startswith("zeroimage: error")]
    assert errors == [
        f"zeroimage: error: credential helper 'evil' could not get credentials for {host} (exit status 1): {SHOWN}"
    ], result.describe()
