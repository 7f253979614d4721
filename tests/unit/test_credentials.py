"""Credentials from Docker's config.json (auths, credHelpers, credsStore) and Podman's auth.json."""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zeroimage.errors import CredentialError, ZeroimageError
from zeroimage.transports.registry.credentials import Credential, CredentialStore, registry_of_key

HUB_KEY = "https://index.docker.io/v1/"
SECRET = "s3cr3t-P@ss"
TOKEN = "identity-token-0123"

# A credential helper speaking Docker's protocol, keeping its credentials in $FAKE_STORE.
FAKE_HELPER = f"""#!{sys.executable}
import json, os, sys

action, data = sys.argv[1], sys.stdin.read()
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps([action, data]) + "\\n")
if os.environ.get("FAKE_FAIL"):
    print(os.environ["FAKE_FAIL"])
    sys.exit(1)
if os.environ.get("FAKE_GARBAGE"):
    print(os.environ["FAKE_GARBAGE"])
    sys.exit(0)
path = os.environ["FAKE_STORE"]
store = json.load(open(path)) if os.path.exists(path) else {{}}
if action == "get":
    if data not in store:
        print("credentials not found in native keychain")
        sys.exit(1)
    entry = store[data]
    print(json.dumps({{"ServerURL": data, "Username": entry["Username"], "Secret": entry["Secret"]}}))
elif action == "store":
    request = json.loads(data)
    store[request["ServerURL"]] = {{"Username": request["Username"], "Secret": request["Secret"]}}
elif action == "erase":
    if data not in store:
        print("credentials not found in native keychain")
        sys.exit(1)
    del store[data]
else:
    print("unknown action")
    sys.exit(1)
json.dump(store, open(path, "w"))
"""


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A private environment: Docker config, home, and a PATH holding docker-credential-fake only."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-fake"
    helper.write_text(FAKE_HELPER)
    helper.chmod(0o755)
    (tmp_path / "home").mkdir()
    return {
        "HOME": str(tmp_path / "home"),
        "DOCKER_CONFIG": str(tmp_path / "docker"),
        "PATH": str(bin_dir),
        "FAKE_STORE": str(tmp_path / "helper-store.json"),
        "FAKE_LOG": str(tmp_path / "helper-log.jsonl"),
    }


def config_path(env: dict[str, str]) -> Path:
    return Path(env["DOCKER_CONFIG"]) / "config.json"


def write_config(env: dict[str, str], doc: Any) -> Path:
    path = config_path(env)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def read_config(env: dict[str, str]) -> Any:
    return json.loads(config_path(env).read_text())


def helper_store(env: dict[str, str], entries: dict[str, tuple[str, str]] | None = None) -> dict[str, Any]:
    path = Path(env["FAKE_STORE"])
    if entries is not None:
        path.write_text(json.dumps({url: {"Username": u, "Secret": s} for url, (u, s) in entries.items()}))
    return json.loads(path.read_text()) if path.exists() else {}


def helper_calls(env: dict[str, str]) -> list[list[str]]:
    path = Path(env["FAKE_LOG"])
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# -- Credential ------------------------------------------------------------------------------------


def test_repr_redacts_secrets() -> None:
    credential = Credential("bob", SECRET, TOKEN)
    for text in (repr(credential), str(credential), f"{credential}", f"{credential!r}"):
        assert "bob" in text
        assert SECRET not in text
        assert TOKEN not in text
    assert repr(Credential("bob")) == "Credential(username='bob', password='', identity_token='')"


# -- auths in config.json --------------------------------------------------------------------------


def test_nothing_configured(env: dict[str, str]) -> None:
    assert CredentialStore(env).get("docker.io") is None
    write_config(env, "")
    assert CredentialStore(env).get("docker.io") is None
    write_config(env, {"auths": {}})
    assert CredentialStore(env).get("docker.io") is None


def test_auths_base64(env: dict[str, str]) -> None:
    write_config(env, {"auths": {"localhost:5000": {"auth": b64(f"bob:{SECRET}")}}})
    assert CredentialStore(env).get("localhost:5000") == Credential("bob", SECRET)
    assert CredentialStore(env).get("localhost:5001") is None


def test_password_may_contain_colons_and_padding_is_lenient(env: dict[str, str]) -> None:
    write_config(env, {"auths": {"r.io": {"auth": b64("bob:a:b:c\0\0").rstrip("=")}}})
    assert CredentialStore(env).get("r.io") == Credential("bob", "a:b:c")


def test_identity_token(env: dict[str, str]) -> None:
    write_config(env, {"auths": {HUB_KEY: {"auth": b64("bob:"), "identitytoken": TOKEN}}})
    assert CredentialStore(env).get("docker.io") == Credential("bob", "", TOKEN)
    write_config(env, {"auths": {"r.io": {"identitytoken": TOKEN}}})
    assert CredentialStore(env).get("r.io") == Credential(identity_token=TOKEN)


def test_plain_username_and_password_fields(env: dict[str, str]) -> None:
    write_config(env, {"auths": {"r.io": {"username": "bob", "password": SECRET}}})
    assert CredentialStore(env).get("r.io") == Credential("bob", SECRET)


@pytest.mark.parametrize("key", [HUB_KEY, "index.docker.io", "registry-1.docker.io", "docker.io", "https://docker.io"])
def test_docker_hub_keys(env: dict[str, str], key: str) -> None:
    write_config(env, {"auths": {key: {"auth": b64(f"bob:{SECRET}")}}})
    assert CredentialStore(env).get("docker.io") == Credential("bob", SECRET)


@pytest.mark.parametrize(
    "key", ["localhost:5000", "http://localhost:5000", "https://localhost:5000/v1/", "https://LocalHost:5000/v2/"]
)
def test_registry_keys_normalised(env: dict[str, str], key: str) -> None:
    write_config(env, {"auths": {key: {"auth": b64(f"bob:{SECRET}")}}})
    assert CredentialStore(env).get("localhost:5000") == Credential("bob", SECRET)


def test_exact_key_wins_over_aliases(env: dict[str, str]) -> None:
    write_config(
        env,
        {"auths": {"index.docker.io": {"auth": b64("old:x")}, HUB_KEY: {"auth": b64("new:y")}}},
    )
    assert CredentialStore(env).get("docker.io") == Credential("new", "y")


def test_empty_entry_is_not_a_credential(env: dict[str, str]) -> None:
    write_config(env, {"auths": {HUB_KEY: {}, "index.docker.io": {"auth": b64("bob:pw")}}})
    assert CredentialStore(env).get("docker.io") == Credential("bob", "pw")


def test_home_default_location(env: dict[str, str]) -> None:
    del env["DOCKER_CONFIG"]
    path = Path(env["HOME"]) / ".docker" / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"auths": {"r.io": {"auth": b64("bob:pw")}}}))
    assert CredentialStore(env).get("r.io") == Credential("bob", "pw")
    assert CredentialStore(env).docker_config_path() == path


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        ('{"auths": {"r.io": {"auth": "' + b64(f"bob:{SECRET}") + '"}', "malformed JSON"),
        (f'{{"auths": {{"r.io": {{"auth": "{SECRET}}}}}', "malformed JSON"),
        ("[1, 2]", "JSON object"),
        ('{"auths": []}', "'auths' must be a JSON object"),
        ('{"auths": {"r.io": "' + SECRET + '"}}', "must be a JSON object"),
        ('{"auths": {"r.io": {"auth": 12}}}', "must be a string"),
        ('{"auths": {"r.io": {"auth": "' + SECRET + '"}}}', "not base64"),
        ('{"auths": {"r.io": {"auth": "' + b64(SECRET) + '"}}}', "not base64 of USER:PASSWORD"),
        ('{"auths": {"r.io": {"auth": "' + b64(":" + SECRET) + '"}}}', "not base64 of USER:PASSWORD"),
        ('{"credsStore": 7}', "must be a string"),
        ('{"credHelpers": "fake"}', "'credHelpers' must be a JSON object"),
        ("[" * 100_000, "malformed JSON"),
    ],
)
def test_malformed_config(env: dict[str, str], doc: str, why: str) -> None:
    path = write_config(env, doc)
    with pytest.raises(CredentialError) as info:
        CredentialStore(env).get("r.io")
    message = str(info.value)
    assert str(path) in message
    assert why in message
    assert SECRET not in message
    assert b64(f"bob:{SECRET}") not in message


def test_config_not_utf8(env: dict[str, str]) -> None:
    path = config_path(env)
    path.parent.mkdir()
    path.write_bytes(b'{"auths": "\xff"}')
    with pytest.raises(CredentialError, match="not UTF-8"):
        CredentialStore(env).get("r.io")


def test_unreadable_config(env: dict[str, str]) -> None:
    config_path(env).mkdir(parents=True)  # a directory where the file should be
    with pytest.raises(CredentialError, match="cannot read"):
        CredentialStore(env).get("r.io")


def test_utf8_bom_is_accepted(env: dict[str, str]) -> None:
    path = config_path(env)
    path.parent.mkdir()
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"auths": {"r.io": {"auth": b64("bob:pw")}}}).encode())
    assert CredentialStore(env).get("r.io") == Credential("bob", "pw")


# -- credential helpers ----------------------------------------------------------------------------


def test_cred_helpers(env: dict[str, str]) -> None:
    write_config(env, {"credHelpers": {"r.io": "fake"}, "auths": {"r.io": {"auth": b64("legacy:pw")}}})
    helper_store(env, {"r.io": ("bob", SECRET)})
    assert CredentialStore(env).get("r.io") == Credential("bob", SECRET)
    assert helper_calls(env) == [["get", "r.io"]]
    assert CredentialStore(env).get("other.io") is None  # no helper for it, no credsStore


def test_docker_hub_helper_gets_the_legacy_url(env: dict[str, str]) -> None:
    write_config(env, {"credsStore": "fake"})
    helper_store(env, {HUB_KEY: ("bob", SECRET)})
    assert CredentialStore(env).get("docker.io") == Credential("bob", SECRET)
    assert helper_calls(env) == [["get", HUB_KEY]]


def test_cred_helpers_keyed_by_legacy_hub_url(env: dict[str, str]) -> None:
    write_config(env, {"credHelpers": {HUB_KEY: "fake"}, "credsStore": "missing"})
    helper_store(env, {HUB_KEY: ("bob", SECRET)})
    assert CredentialStore(env).get("docker.io") == Credential("bob", SECRET)


def test_helper_identity_token(env: dict[str, str]) -> None:
    write_config(env, {"credsStore": "fake"})
    helper_store(env, {"r.io": ("<token>", TOKEN)})
    assert CredentialStore(env).get("r.io") == Credential(identity_token=TOKEN)


def test_cred_helpers_win_over_creds_store(env: dict[str, str]) -> None:
    write_config(env, {"credsStore": "missing", "credHelpers": {"r.io": "fake"}})
    helper_store(env, {"r.io": ("bob", SECRET)})
    assert CredentialStore(env).get("r.io") == Credential("bob", SECRET)
    with pytest.raises(CredentialError, match="docker-credential-missing is not on PATH"):
        CredentialStore(env).get("other.io")


def test_creds_store_not_found_falls_through_to_auths(env: dict[str, str]) -> None:
    write_config(env, {"credsStore": "fake", "auths": {"r.io": {"auth": b64("legacy:pw")}}})
    assert CredentialStore(env).get("r.io") == Credential("legacy", "pw")
    assert CredentialStore(env).get("other.io") is None
    assert [call[0] for call in helper_calls(env)] == ["get", "get"]


def test_creds_store_not_found_falls_through_to_podman(env: dict[str, str], tmp_path: Path) -> None:
    write_config(env, {"credsStore": "fake"})
    auth_file = tmp_path / "auth.json"
    auth_file.write_text(json.dumps({"auths": {"r.io": {"auth": b64("podman:pw")}}}))
    env["REGISTRY_AUTH_FILE"] = str(auth_file)
    assert CredentialStore(env).get("r.io") == Credential("podman", "pw")


def test_missing_helper(env: dict[str, str]) -> None:
    write_config(env, {"credsStore": "nothere", "auths": {"r.io": {"auth": b64(f"bob:{SECRET}")}}})
    with pytest.raises(CredentialError) as info:
        CredentialStore(env).get("r.io")
    message = str(info.value)
    assert "'nothere'" in message
    assert "r.io" in message
    assert "docker-credential-nothere is not on PATH" in message
    assert SECRET not in message


def test_helper_is_not_run_from_the_current_directory(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path / "bin")
    env["PATH"] = f"::.:{tmp_path / 'nothing'}"
    write_config(env, {"credsStore": "fake"})
    with pytest.raises(CredentialError, match="docker-credential-fake is not on PATH"):
        CredentialStore(env).get("r.io")
    assert helper_calls(env) == []


@pytest.mark.parametrize("name", ["../fake", "/bin/sh", "a/b"])
def test_helper_name_cannot_be_a_path(env: dict[str, str], name: str) -> None:
    write_config(env, {"credsStore": name})
    with pytest.raises(CredentialError, match="invalid credential helper name"):
        CredentialStore(env).get("r.io")


def test_failing_helper(env: dict[str, str]) -> None:
    write_config(env, {"credsStore": "fake"})
    env["FAKE_FAIL"] = "error getting credentials - gpg: decryption failed\nmore detail"
    with pytest.raises(CredentialError) as info:
        CredentialStore(env).get("r.io")
    message = str(info.value)
    assert "'fake'" in message
    assert "r.io" in message
    assert "exit status 1" in message
    assert message.endswith(": error getting credentials - gpg: decryption failed")
    assert "more detail" not in message


def test_helper_that_is_not_executable(env: dict[str, str], tmp_path: Path) -> None:
    broken = tmp_path / "bin" / "docker-credential-broken"
    broken.write_text("not a program\n")
    broken.chmod(0o755)  # executable bit, but no interpreter line: exec fails
    write_config(env, {"credsStore": "broken"})
    with pytest.raises(CredentialError, match="'broken'"):
        CredentialStore(env).get("r.io")


@pytest.mark.parametrize(
    "output",
    [
        f"Username: bob Secret: {SECRET}",
        json.dumps(["bob", SECRET]),
        json.dumps({"Username": "bob", "Secret": 12}),
        json.dumps({"Username": ["bob"], "Secret": SECRET}),
    ],
)
def test_helper_malformed_output(env: dict[str, str], output: str) -> None:
    write_config(env, {"credsStore": "fake"})
    env["FAKE_GARBAGE"] = output
    with pytest.raises(CredentialError) as info:
        CredentialStore(env).get("r.io")
    message = str(info.value)
    assert message == "credential helper 'fake' sent malformed output for r.io"
    assert SECRET not in message


def bad_helper(tmp_path: Path, name: str, body: str) -> None:
    """A helper ``docker-credential-NAME`` that runs ``body`` (Python) and records its pid."""
    path = tmp_path / "bin" / f"docker-credential-{name}"
    path.write_text(
        f"#!{sys.executable}\nimport os, sys, time\nopen(os.environ['FAKE_PID'], 'w').write(str(os.getpid()))\n{body}\n"
    )
    path.chmod(0o755)


def gone(pid_file: Path) -> bool:
    """The recorded helper process no longer runs (it was stopped and reaped)."""
    try:
        os.kill(int(pid_file.read_text()), 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("time.sleep(60)", "did not finish within 3 s; stopped it"),
        ("sys.stdin.read(); sys.stdout.close(); sys.stderr.close(); time.sleep(60)", "did not finish within 3 s"),
        (
            "block = b'x' * 65536\nfor _ in range(256): sys.stdout.buffer.write(block)",
            "printed more than 1048576 bytes",
        ),
        ("block = b'x' * 65536\nwhile True: sys.stderr.buffer.write(block)", "printed more than 1048576 bytes"),
    ],
    ids=["hangs", "closes-its-output-and-hangs", "prints-16-MiB", "prints-without-end-on-stderr"],
)
def test_a_helper_that_hangs_or_floods_is_stopped(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str, words: str
) -> None:
    """A helper is stopped after HELPER_TIMEOUT (30 s; 3 s here) or MAX_HELPER_OUTPUT (1 MiB):
    one clean error that says which, soon, and the helper no longer runs."""
    from zeroimage.transports.registry import credentials

    monkeypatch.setattr(credentials, "HELPER_TIMEOUT", 3.0)
    bad_helper(tmp_path, "bad", body)
    env["FAKE_PID"] = str(tmp_path / "helper.pid")
    write_config(env, {"credsStore": "bad", "auths": {"r.io": {"auth": b64(f"bob:{SECRET}")}}})
    started = time.monotonic()
    with pytest.raises(CredentialError) as info:
        CredentialStore(env).get("r.io")
    assert time.monotonic() - started < 10
    message = str(info.value)
    assert message.startswith("credential helper 'bad' for r.io ") and words in message, message
    assert gone(tmp_path / "helper.pid")


# -- Podman ----------------------------------------------------------------------------------------


def test_podman_registry_auth_file(env: dict[str, str], tmp_path: Path) -> None:
    auth_file = tmp_path / "podman-auth.json"
    auth_file.write_text(json.dumps({"auths": {"docker.io": {"auth": b64(f"bob:{SECRET}")}}}))
    env["REGISTRY_AUTH_FILE"] = str(auth_file)
    env["XDG_RUNTIME_DIR"] = str(tmp_path / "ignored")
    assert CredentialStore(env).get("docker.io") == Credential("bob", SECRET)


def test_podman_runtime_dir(env: dict[str, str], tmp_path: Path) -> None:
    auth_file = tmp_path / "run" / "containers" / "auth.json"
    auth_file.parent.mkdir(parents=True)
    auth_file.write_text(json.dumps({"auths": {"quay.io": {"auth": b64("bob:pw")}}}))
    env["XDG_RUNTIME_DIR"] = str(tmp_path / "run")
    assert CredentialStore(env).get("quay.io") == Credential("bob", "pw")


def test_podman_config_home(env: dict[str, str]) -> None:
    auth_file = Path(env["HOME"]) / ".config" / "containers" / "auth.json"
    auth_file.parent.mkdir(parents=True)
    auth_file.write_text(json.dumps({"auths": {"quay.io": {"auth": b64("bob:pw")}}}))
    assert CredentialStore(env).get("quay.io") == Credential("bob", "pw")


def test_docker_config_comes_first(env: dict[str, str], tmp_path: Path) -> None:
    write_config(env, {"auths": {"quay.io": {"auth": b64("docker:pw")}}})
    auth_file = tmp_path / "auth.json"
    auth_file.write_text(json.dumps({"auths": {"quay.io": {"auth": b64("podman:pw")}}}))
    env["REGISTRY_AUTH_FILE"] = str(auth_file)
    assert CredentialStore(env).get("quay.io") == Credential("docker", "pw")


def test_podman_repository_scoped_keys_do_not_match_a_registry(env: dict[str, str], tmp_path: Path) -> None:
    auth_file = tmp_path / "auth.json"
    auth_file.write_text(json.dumps({"auths": {"quay.io/team": {"auth": b64("team:pw")}}}))
    env["REGISTRY_AUTH_FILE"] = str(auth_file)
    assert CredentialStore(env).get("quay.io") is None


def test_malformed_podman_file(env: dict[str, str], tmp_path: Path) -> None:
    auth_file = tmp_path / "auth.json"
    auth_file.write_text(f'{{"auths": {{"quay.io": {{"auth": "{SECRET}"')
    env["REGISTRY_AUTH_FILE"] = str(auth_file)
    with pytest.raises(CredentialError) as info:
        CredentialStore(env).get("quay.io")
    assert str(auth_file) in str(info.value)
    assert SECRET not in str(info.value)


# -- store -----------------------------------------------------------------------------------------


def test_store_in_config_json(env: dict[str, str]) -> None:
    where = CredentialStore(env).store("docker.io", Credential("bob", SECRET))
    path = config_path(env)
    assert where == str(path)
    assert read_config(env) == {"auths": {HUB_KEY: {"auth": b64(f"bob:{SECRET}")}}}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert CredentialStore(env).get("docker.io") == Credential("bob", SECRET)
    assert [p.name for p in path.parent.iterdir()] == ["config.json"]  # no temp file left behind


def test_store_keeps_unknown_keys(env: dict[str, str]) -> None:
    original = {
        "auths": {
            "other.io": {"auth": b64("x:y")},
            "localhost:5000": {"auth": b64("old:old"), "email": "bob@example.com", "identitytoken": "stale"},
        },
        "psFormat": "table {{.ID}}",
        "plugins": {"buildx": {"enabled": True}},
        "currentContext": "remote",
        "proxies": {"default": {"httpProxy": "http://proxy:3128"}},
        "numbers": [1, 2.5, None],
    }
    path = write_config(env, original)
    path.chmod(0o644)
    where = CredentialStore(env).store("localhost:5000", Credential("bob", SECRET))
    assert where == str(path)
    expected = json.loads(json.dumps(original))
    expected["auths"]["localhost:5000"] = {"email": "bob@example.com", "auth": b64(f"bob:{SECRET}")}
    assert read_config(env) == expected
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_store_identity_token(env: dict[str, str]) -> None:
    CredentialStore(env).store("r.io", Credential("bob", "", TOKEN))
    assert read_config(env)["auths"]["r.io"] == {"auth": b64("bob:"), "identitytoken": TOKEN}
    assert CredentialStore(env).get("r.io") == Credential("bob", "", TOKEN)


def test_store_through_a_symlink(env: dict[str, str], tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "docker.json"
    real.parent.mkdir()
    real.write_text(json.dumps({"psFormat": "x"}))
    config_path(env).parent.mkdir()
    config_path(env).symlink_to(real)
    CredentialStore(env).store("r.io", Credential("bob", "pw"))
    assert config_path(env).is_symlink()
    assert json.loads(real.read_text()) == {"psFormat": "x", "auths": {"r.io": {"auth": b64("bob:pw")}}}


def test_store_refuses_malformed_config(env: dict[str, str]) -> None:
    path = write_config(env, '{"auths": {')
    with pytest.raises(CredentialError, match="malformed JSON"):
        CredentialStore(env).store("r.io", Credential("bob", SECRET))
    assert path.read_text() == '{"auths": {'


def test_store_unwritable(env: dict[str, str], tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    env["DOCKER_CONFIG"] = str(blocker / "docker")
    with pytest.raises(CredentialError) as info:
        CredentialStore(env).store("r.io", Credential("bob", SECRET))
    assert SECRET not in str(info.value)


def test_store_without_home(env: dict[str, str]) -> None:
    del env["DOCKER_CONFIG"], env["HOME"]
    with pytest.raises(CredentialError, match="neither DOCKER_CONFIG nor HOME"):
        CredentialStore(env).store("r.io", Credential("bob", SECRET))


def test_store_through_creds_store(env: dict[str, str]) -> None:
    path = write_config(env, {"credsStore": "fake", "psFormat": "x"})
    before = path.read_text()
    assert CredentialStore(env).store("docker.io", Credential("bob", SECRET)) == "credential helper 'fake'"
    assert helper_store(env) == {HUB_KEY: {"Username": "bob", "Secret": SECRET}}
    assert path.read_text() == before  # the secret went to the helper only
    assert json.loads(helper_calls(env)[0][1]) == {"ServerURL": HUB_KEY, "Username": "bob", "Secret": SECRET}
    assert CredentialStore(env).get("docker.io") == Credential("bob", SECRET)


def test_store_identity_token_through_helper(env: dict[str, str]) -> None:
    write_config(env, {"credHelpers": {"r.io": "fake"}})
    assert CredentialStore(env).store("r.io", Credential("bob", "", TOKEN)) == "credential helper 'fake'"
    assert helper_store(env) == {"r.io": {"Username": "<token>", "Secret": TOKEN}}
    assert CredentialStore(env).get("r.io") == Credential(identity_token=TOKEN)


@pytest.mark.parametrize(
    ("credential", "secret"),
    [
        (Credential("bob", SECRET), SECRET),
        (Credential("bob", "", TOKEN), TOKEN),
        (Credential("bob", SECRET + '"\\'), SECRET + '"\\'),
    ],
)
@pytest.mark.parametrize(
    "template",
    [
        "cannot store {secret}",
        "cannot store {json}",
        'cannot store {{"ServerURL":"r.io","Username":"bob","Secret":{json}}}',
        "x" * 190 + "{secret}",  # the secret straddles where the echoed line is cut
    ],
)
def test_failing_store_never_echoes_the_secret(
    env: dict[str, str], credential: Credential, secret: str, template: str
) -> None:
    write_config(env, {"credsStore": "fake"})
    env["FAKE_FAIL"] = template.format(secret=secret, json=json.dumps(secret))
    with pytest.raises(CredentialError) as info:
        CredentialStore(env).store("r.io", credential)
    message = str(info.value)
    assert "'fake'" in message and "r.io" in message
    assert secret[:8] not in message


def test_failing_store_echoes_a_harmless_message(env: dict[str, str]) -> None:
    write_config(env, {"credsStore": "fake"})
    env["FAKE_FAIL"] = "keychain is locked"
    with pytest.raises(CredentialError, match=r"could not store credentials for r\.io .*: keychain is locked$"):
        CredentialStore(env).store("r.io", Credential("bob", SECRET))


# -- erase -----------------------------------------------------------------------------------------


def test_erase_from_config_json(env: dict[str, str]) -> None:
    write_config(
        env,
        {
            "auths": {
                HUB_KEY: {"auth": b64("bob:pw")},
                "index.docker.io": {"auth": b64("old:pw")},
                "r.io": {"auth": b64("keep:pw")},
            },
            "psFormat": "x",
        },
    )
    store = CredentialStore(env)
    assert store.erase("docker.io") is True
    assert read_config(env) == {"auths": {"r.io": {"auth": b64("keep:pw")}}, "psFormat": "x"}
    assert stat.S_IMODE(config_path(env).stat().st_mode) == 0o600
    assert store.get("docker.io") is None
    assert store.erase("docker.io") is False


def test_erase_with_nothing_configured(env: dict[str, str]) -> None:
    assert CredentialStore(env).erase("r.io") is False
    assert not config_path(env).exists()


def test_erase_through_helper(env: dict[str, str]) -> None:
    path = write_config(env, {"credsStore": "fake"})
    before = path.read_text()
    helper_store(env, {"r.io": ("bob", SECRET), "other.io": ("x", "y")})
    assert CredentialStore(env).erase("r.io") is True
    assert helper_store(env) == {"other.io": {"Username": "x", "Secret": "y"}}
    assert helper_calls(env) == [["erase", "r.io"]]
    assert path.read_text() == before
    assert CredentialStore(env).erase("r.io") is False


def test_erase_through_helper_also_drops_legacy_auths(env: dict[str, str]) -> None:
    write_config(env, {"credsStore": "fake", "auths": {"r.io": {"auth": b64("legacy:pw")}}})
    assert CredentialStore(env).erase("r.io") is True
    assert read_config(env) == {"credsStore": "fake", "auths": {}}
    assert CredentialStore(env).get("r.io") is None


def test_erase_failing_helper(env: dict[str, str]) -> None:
    write_config(env, {"credHelpers": {"r.io": "fake"}})
    env["FAKE_FAIL"] = "permission denied"
    with pytest.raises(CredentialError, match="could not erase credentials for r.io"):
        CredentialStore(env).erase("r.io")


def test_store_then_erase_round_trip(env: dict[str, str]) -> None:
    store = CredentialStore(env)
    store.store("localhost:5000", Credential("bob", SECRET))
    store.store("r.io", Credential("eve", "pw"))
    assert store.erase("localhost:5000") is True
    assert read_config(env) == {"auths": {"r.io": {"auth": b64("eve:pw")}}}


# -- helpers and properties -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "registry"),
    [
        (HUB_KEY, "docker.io"),
        ("index.docker.io", "docker.io"),
        ("https://registry-1.docker.io/v2/", "docker.io"),
        ("docker.io", "docker.io"),
        ("http://localhost:5000", "localhost:5000"),
        ("https://Ghcr.IO/v1/", "ghcr.io"),
        ("ghcr.io/", "ghcr.io"),
        ("quay.io/team", None),
        ("", None),
        ("https://", None),
    ],
)
def test_registry_of_key(key: str, registry: str | None) -> None:
    assert registry_of_key(key) == registry


def test_default_environment_is_os_environ(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    write_config(env, {"auths": {"r.io": {"auth": b64("bob:pw")}}})
    for name in ("REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert CredentialStore().get("r.io") == Credential("bob", "pw")
    assert os.environ["DOCKER_CONFIG"] == env["DOCKER_CONFIG"]


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=10,
)
_configs = st.one_of(
    st.text(max_size=200),
    _json.map(json.dumps),
    st.dictionaries(
        st.sampled_from(["auths", "credHelpers", "credsStore", "other"]),
        st.one_of(
            _json,
            st.dictionaries(
                st.sampled_from(["r.io", "https://r.io/v1/", "http://r.io", "x"]),
                st.one_of(
                    _json,
                    st.dictionaries(st.sampled_from(["auth", "identitytoken", "username", "password"]), _json),
                    st.builds(lambda t: {"auth": b64(t)}, st.text(max_size=20)),
                ),
            ),
        ),
    ).map(json.dumps),
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=200, deadline=None)
@given(_configs)
def test_arbitrary_config_raises_only_credential_errors(env: dict[str, str], text: str) -> None:
    env["PATH"] = ""  # no helper can run
    write_config(env, text)
    try:
        result = CredentialStore(env).get("r.io")
    except ZeroimageError as exc:
        assert isinstance(exc, CredentialError)
    else:
        assert result is None or isinstance(result, Credential)
