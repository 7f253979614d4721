"""Issue 13: an image behaves as the Dockerfile the README compares a build with (``FROM``,
``COPY``, ``ENV``, ``USER``, ``WORKDIR``, ``ENTRYPOINT`` as BuildKit does them), is labelled for
its program's platform, and a program that cannot start in it is caught at build time.

Each behaviour is checked where it shows: runc runs the image (its ``id``, ``pwd``, ``env``,
``ls``), containerd's ``ctr run`` sees the environment, ``docker history`` shows the history.
The bases are written with ``tarfile`` (tests/support/images.py), each holding just what its
test is about.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ARM64_ONLY, MULTIARCH, Zeroimage
from tests.support import images, peers
from tests.support.containerd import Containerd
from tests.support.dockerd import Dockerd
from tests.support.images import Member, directory, symlink, text_file
from tests.support.outcomes import fingerprint, refused

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BASE_PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nnobody:x:99:99::/:/bin/false\n"
BASE_GROUP = "root:x:0:\napp:x:1000:\nnobody:x:99:\n"


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """OCI archives of small linux/amd64 bases, by name:

    ``app``     a directory /app (with a file in it) and ``PATH=/usr/bin:/bin``
    ``users``   /etc/passwd and /etc/group of its own: root, app (1000), nobody as 99
    ``as-app``  the same files, and ``User: app`` in its config
    ``merged``  /usr/bin, with /bin a symlink to it (a merged-/usr distribution)
    """
    folder = tmp_path_factory.mktemp("bases")
    users = [directory("etc"), text_file("etc/passwd", BASE_PASSWD), text_file("etc/group", BASE_GROUP)]
    return {
        "app": images.write_archive(
            folder / "app.tar",
            [[directory("app"), text_file("app/readme", "the base's\n")]],
            container={"Env": ["PATH=/usr/bin:/bin", "HOME=/root"]},
        ),
        "users": images.write_archive(folder / "users.tar", [users]),
        "as-app": images.write_archive(folder / "as-app.tar", [users], container={"User": "app"}),
        "merged": images.write_archive(
            folder / "merged.tar", [[directory("usr"), directory("usr/bin"), symlink("bin", "usr/bin")]]
        ),
    }


def run(archive: Path, *script: str, **options: object) -> subprocess.CompletedProcess[str]:
    """The image's entrypoint (busybox) with ``sh -c SCRIPT`` as its arguments, under runc."""
    entrypoint = peers.skopeo_inspect(f"oci-archive:{archive}", config=True)["config"]["Entrypoint"]
    return peers.run_image(archive, args=[*entrypoint, "sh", "-c", "; ".join(script)], **options)  # type: ignore[arg-type]


def based(args: list[str], bases: dict[str, Path]) -> list[str]:
    """``args`` with each ``--from NAME`` naming the archive of base NAME."""
    return [f"oci-archive:{bases[a]}" if i and args[i - 1] == "--from" else a for i, a in enumerate(args)]


def warnings_of(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("zeroimage: warning: ")]


# -- 3. programs that cannot start --------------------------------------------------------------


CANNOT_START = {
    "empty": ("", [], "is an empty file"),
    "text-without-shebang": ("text", [], "is not a program"),
    "no-execute-bit": (0o644, [], "(mode 0644) is not executable"),
    "not-for-the-user": (
        0o700,
        ["--with", "users", "--user", "nonroot"],
        "(mode 0700, owner 0:0) cannot be executed by user 65532:65532",
    ),
    "not-for-the-base-user": (
        0o700,
        ["--from", "as-app"],
        "(mode 0700, owner 0:0) cannot be executed by user 1000:1000",
    ),
}


@pytest.mark.parametrize("content,flags,why", CANNOT_START.values(), ids=CANNOT_START.keys())
def test_a_program_that_cannot_start_is_warned_about(
    zeroimage: Zeroimage, bases: dict[str, Path], tmp_path: Path, content: str | int, flags: list[str], why: str
) -> None:
    """A warning naming why; with --strict an error (exit 1) and nothing written. ``content``:
    the text of a file that is no program, or the mode of a program."""
    program = tmp_path / "app"
    if isinstance(content, int):
        images.tiny_program(program, content)
    else:
        program.write_text(content)
        program.chmod(0o755)
        flags = [*flags, "--platform", "linux/amd64"]
    options = based(flags, bases)
    result = zeroimage("build", *options, "-o", "out.tar", "app")
    (warning,) = warnings_of(result.stderr)
    assert f"/app {why}" in warning, result.stderr
    before = fingerprint(tmp_path)
    refused(zeroimage("build", "--strict", *options, "-o", "strict.tar", "app", check=False), 1, why)
    assert fingerprint(tmp_path) == before


def test_the_warning_is_what_runc_finds(zeroimage: Zeroimage, busybox: Path, tmp_path: Path) -> None:
    """The check judges as the kernel does: the 0700 root-owned program that nonroot may not
    run is refused by runc; the same image run as root starts."""
    program = tmp_path / "busybox"
    shutil.copy(busybox, program)
    program.chmod(0o700)
    result = zeroimage("build", "--with", "users", "--user", "nonroot", "-o", "out.tar", str(program))
    assert "cannot be executed by user 65532:65532" in result.stderr
    denied = run(tmp_path / "out.tar", "echo started", check=False)
    assert denied.returncode != 0 and "permission denied" in (denied.stdout + denied.stderr).lower()
    assert run(tmp_path / "out.tar", "echo started", user=0).stdout == "started\n"


def test_a_directory_is_not_a_program(zeroimage: Zeroimage, tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    before = fingerprint(tmp_path)
    for strict in ([], ["--strict"]):
        refused(zeroimage("build", *strict, "--platform", "linux/amd64", "app", check=False), 1, "directory")
    assert fingerprint(tmp_path) == before


def test_a_program_that_cannot_say_its_platform_never_gets_the_machines(zeroimage: Zeroimage, tmp_path: Path) -> None:
    """A script: --platform is asked for (no base, a base of many platforms); a base of one
    platform gives it that one."""
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    before = fingerprint(tmp_path)
    for base in ([], ["--from-archive", str(MULTIARCH)]):
        refused(zeroimage("build", *base, "-o", "s.tar", "run.sh", check=False), 1, "--platform")
    assert fingerprint(tmp_path) == before
    zeroimage("build", "--from-archive", str(ARM64_ONLY), "-o", "one.tar", "run.sh")
    image = images.read_image(tmp_path / "one.tar", tmp_path)
    assert image.entry["platform"] == {"architecture": "arm64", "os": "linux", "variant": "v8"}


@pytest.fixture(scope="module")
def dynamic_hello(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/hello linked dynamically: it needs the loader and libc.so.6 alone."""
    peers.require("cc")
    out = tmp_path_factory.mktemp("dynamic") / "hello"
    source = Path(__file__).parent.parent.parent / "examples" / "hello" / "hello.c"
    peers.run(["cc", "-O1", "-o", str(out), str(source)])
    needed = peers.run(["readelf", "-d", str(out)]).stdout
    if needed.count("(NEEDED)") != 1 or "libc.so.6" not in needed:
        pytest.skip(f"this compiler's hello needs more than libc.so.6:\n{needed}")
    return out


def _host_file(path: str) -> Member:
    return Member(path.lstrip("/"), "file", 0o755, data=Path(path).resolve().read_bytes())


def test_one_missing_library_and_a_missing_loader_are_said_once(
    zeroimage: Zeroimage, dynamic_hello: Path, tmp_path: Path
) -> None:
    """ "the library libc.so.6 is missing" (one library, said so); a missing loader is the
    loader, never a library again (libc.so.6 needs ld-linux-x86-64.so.2)."""
    loader, libc = "/lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/libc.so.6"
    if not (Path(loader).exists() and Path(libc).exists()):
        pytest.skip("not an x86-64 Debian-style host")
    with_loader = images.write_archive(tmp_path / "loader.tar", [[directory("lib64"), _host_file(loader)]])
    dirs = [directory("lib"), directory("lib/x86_64-linux-gnu")]
    with_libc = images.write_archive(tmp_path / "libc.tar", [[*dirs, _host_file(libc)]])
    (warning,) = warnings_of(
        zeroimage("build", "--from", f"oci-archive:{with_loader}", "-o", "a.tar", str(dynamic_hello)).stderr
    )
    assert warning.endswith(": the library libc.so.6 is missing"), warning
    (warning,) = warnings_of(
        zeroimage("build", "--from", f"oci-archive:{with_libc}", "-o", "b.tar", str(dynamic_hello)).stderr
    )
    assert warning.endswith(f": the ELF loader {loader} is missing"), warning


# -- 4. Dockerfile semantics ---------------------------------------------------------------------


def test_entrypoint_path_to_a_directory_puts_the_program_inside(
    zeroimage: Zeroimage, bases: dict[str, Path], busybox: Path, tmp_path: Path
) -> None:
    """As ``COPY app /usr/local/bin/`` does; and a base's /app directory is kept, the program
    landing in it, as ``COPY busybox /app`` would."""
    zeroimage("build", "--entrypoint-path", "/usr/local/bin/", "-o", "slash.tar", str(busybox))
    slash = tmp_path / "slash.tar"
    assert images.read_image(slash, tmp_path).config["config"]["Entrypoint"] == ["/usr/local/bin/busybox"]
    assert run(slash, "echo from $0").stdout == "from sh\n"
    zeroimage(
        "build", "--from", f"oci-archive:{bases['app']}", "--entrypoint-path", "/app", "-o", "app.tar", str(busybox)
    )
    inside = tmp_path / "app.tar"
    assert images.read_image(inside, tmp_path).config["config"]["Entrypoint"] == ["/app/busybox"]
    assert run(inside, "ls /app", "cat /app/readme").stdout == "busybox\nreadme\nthe base's\n"


@pytest.mark.parametrize("base,into,lands", [("app", "/app", "app/conf"), ("merged", "/bin", "usr/bin/conf")])
def test_add_onto_a_base_directory_copies_into_it(
    zeroimage: Zeroimage, bases: dict[str, Path], tmp_path: Path, base: str, into: str, lands: str
) -> None:
    """``--add conf:/app`` where the base has a directory /app (or a symlink to one, as /bin on
    a merged-/usr base) puts the file inside it, as ``COPY conf /app`` does: the base's
    directory, and what it holds, is never replaced by a file."""
    images.tiny_program(tmp_path / "prog")
    (tmp_path / "conf").write_text("x = 1\n")
    zeroimage("build", "--from", f"oci-archive:{bases[base]}", "--add", f"conf:{into}", "-o", "out.tar", "prog")
    rootfs = peers.umoci_unpack(tmp_path / "out.tar", "latest", tmp_path / "bundle") / "rootfs"
    assert (rootfs / lands).read_text() == "x = 1\n"
    if base == "app":
        assert (rootfs / "app" / "readme").read_text() == "the base's\n"
    else:
        assert os.readlink(rootfs / "bin") == "usr/bin"


def test_with_users_merges_into_the_bases_users(
    zeroimage: Zeroimage, bases: dict[str, Path], busybox: Path, tmp_path: Path
) -> None:
    """Every base entry stays; nonroot is added; nobody, whose name the base uses for uid 99,
    is the base's, with a warning; ``--user nonroot`` runs as 65532."""
    result = zeroimage(
        "build",
        "--from",
        f"oci-archive:{bases['users']}",
        "--with",
        "users",
        "--user",
        "nonroot",
        "-o",
        "u.tar",
        str(busybox),
    )
    warnings = warnings_of(result.stderr)
    assert len(warnings) == 2 and all("nobody" in w and "keeping it" in w for w in warnings), result.stderr
    out = run(tmp_path / "u.tar", "id -u", "id -g", "cat /etc/passwd /etc/group").stdout.splitlines()
    assert out[:2] == ["65532", "65532"]
    assert out[2:5] == BASE_PASSWD.splitlines()  # the base's users, first and as they were
    assert [line.split(":")[:4] for line in out[5:6]] == [["nonroot", "x", "65532", "65532"]]
    assert out[6:9] == BASE_GROUP.splitlines()
    assert out[9].split(":")[:3] == ["nonroot", "x", "65532"] and len(out) == 10


def test_user_from_an_added_passwd_and_workdir_made_for_it(zeroimage: Zeroimage, busybox: Path, tmp_path: Path) -> None:
    """``--user svc`` resolves in an /etc/passwd given with --add; ``--workdir`` is made as
    BuildKit's WORKDIR makes it: 0755, owned by the --user (root's without one)."""
    (tmp_path / "passwd").write_text("root:x:0:0::/root:/bin/sh\nsvc:x:4242:4243::/:/bin/false\n")
    zeroimage(
        "build", "--add", "passwd:/etc/passwd", "--user", "svc", "--workdir", "/srv/data", "-o", "svc.tar", str(busybox)
    )
    out = run(tmp_path / "svc.tar", "id -u", "id -g", "pwd", "stat -c '%a %u:%g' . /srv").stdout.split("\n")
    assert out[:5] == ["4242", "4243", "/srv/data", "755 4242:4243", "755 0:0"]
    zeroimage("build", "--workdir", "/w", "-o", "root.tar", str(busybox))
    assert run(tmp_path / "root.tar", "pwd", "stat -c '%a %u:%g' .").stdout == "/w\n755 0:0\n"


def test_env_expands_against_the_environment_so_far(
    zeroimage: Zeroimage, bases: dict[str, Path], busybox: Path, tmp_path: Path
) -> None:
    zeroimage(
        "build",
        "--from",
        f"oci-archive:{bases['app']}",
        "--env",
        "PATH=/opt/bin:$PATH",
        "--env",
        "PRICE=\\$5 for ${HOME}",
        "-o",
        "env.tar",
        str(busybox),
    )
    config = images.read_image(tmp_path / "env.tar", tmp_path).config["config"]
    assert sorted(config["Env"]) == ["HOME=/root", "PATH=/opt/bin:/usr/bin:/bin", "PRICE=$5 for /root"]
    out = run(tmp_path / "env.tar", 'echo "$PATH"', 'echo "$PRICE"').stdout
    assert out == "/opt/bin:/usr/bin:/bin\n$5 for /root\n"


def test_a_scratch_images_path_is_seen_by_ctr_run(
    zeroimage: Zeroimage, containerd: Containerd, busybox: Path, tmp_path: Path
) -> None:
    """``ctr run`` adds no PATH of its own: a FROM-scratch image carries Docker's default, and
    ``--env PATH=…`` replaces it."""
    zeroimage("build", "-o", "default.tar", str(busybox))
    zeroimage("build", "--env", "PATH=/only", "-o", "given.tar", str(busybox))
    for archive, path in (("default.tar", DEFAULT_PATH), ("given.tar", "/only")):
        (name,) = containerd.import_archive(tmp_path / archive, name=f"zi-path/{archive.removesuffix('.tar')}")
        env = containerd.run(name, "/busybox", "env").stdout.splitlines()
        assert [line for line in env if line.startswith("PATH=")] == [f"PATH={path}"]


def test_history_is_what_docker_history_shows_for_a_dockerfile(
    zeroimage: Zeroimage, dockerd: Dockerd, bases: dict[str, Path], busybox: Path, tmp_path: Path
) -> None:
    """One entry per instruction, the config's as ``empty_layer`` entries: Docker pairs each
    other entry with a layer, so a wrong flag would show a size against the wrong line."""
    zeroimage(
        "build",
        "--from",
        f"oci-archive:{bases['app']}",
        "--add",
        f"{busybox}:/opt/tool",
        "--env",
        "A=1",
        "--label",
        "l=v",
        "--expose",
        "80",
        "--workdir",
        "/w",
        "--user",
        "1000",
        "--stop-signal",
        "SIGINT",
        "--cmd",
        "x",
        "-o",
        "docker-archive:h.tar:zi/history:v1",
        str(busybox),
    )
    dockerd.load(tmp_path / "h.tar")
    shown = dockerd.docker("history", "--no-trunc", "--format", "{{.CreatedBy}}\t{{.Size}}", "zi/history:v1").stdout
    rows = [line.split("\t") for line in shown.splitlines()][::-1]  # oldest first
    empty = [by for by, size in rows if size == "0B"]
    layers = [by for by, size in rows if size != "0B"]
    assert len(layers) == 3 and layers[0] == "test base layer" and layers[2] == "COPY busybox /busybox"
    assert layers[1].startswith("ADD ") and "/opt/tool" in layers[1]
    assert empty[-8:] == [
        "ENV A=1",
        "LABEL l=v",
        "EXPOSE map[80/tcp:{}]",
        "WORKDIR /w",
        "USER 1000",
        "STOPSIGNAL SIGINT",
        'ENTRYPOINT ["/busybox"]',
        'CMD ["x"]',
    ]


#: What a build is given, and the --add source its one error line must name.
ADD_COLLISIONS = {
    "two-sources-one-path": (["--add", "a:/etc/x", "--add", "b:/etc/x"], "b:/etc/x"),
    "a-source-on-the-program": (["--add", "a:/app"], "a:/app"),
    "a-tree-and-a-file-in-it": (["--add", "tree:/t", "--add", "a:/t/f"], "a:/t/f"),
    "two-sources-one-path-through-a-base-symlink": (
        ["--from", "merged", "--add", "a:/bin/x", "--add", "b:/usr/bin/x"],
        "b:/usr/bin/x",
    ),
    "a-source-on-the-program-through-a-base-symlink": (
        ["--from", "merged", "--entrypoint-path", "/bin/app", "--add", "a:/usr/bin/app"],
        "a:/usr/bin/app",
    ),
}


@pytest.mark.parametrize("args,named", ADD_COLLISIONS.values(), ids=ADD_COLLISIONS.keys())
def test_add_collisions_are_usage_errors(
    zeroimage: Zeroimage, bases: dict[str, Path], tmp_path: Path, args: list[str], named: str
) -> None:
    """Two things for one path in the image (as the image's symlinks lead) are refused, not
    one silently dropped or shadowed."""
    images.tiny_program(tmp_path / "app", 0o755)
    (tmp_path / "a").write_text("a\n")
    (tmp_path / "b").write_text("b\n")
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "f").write_text("f\n")
    before = fingerprint(tmp_path)
    refused(zeroimage("build", *based(args, bases), "-o", "out.tar", "app", check=False), 2, named)
    assert fingerprint(tmp_path) == before


# -- 5. platforms ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def arm_programs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Freestanding 32-bit ARM programs built for ARMv5TE, ARMv6, ARMv7-A and ARMv8-A (AArch32):
    their .ARM.attributes say which (they are labelled, never run)."""
    compiler = peers.which("arm-linux-gnueabi-gcc")
    if compiler is None:
        pytest.skip("arm-linux-gnueabi-gcc is not installed (gcc-arm-linux-gnueabi)")
    folder = tmp_path_factory.mktemp("arm")
    source = folder / "start.c"
    source.write_text("void _start(void) { for (;;) {} }\n")
    built = {}
    for variant, march in (("v5", "armv5te"), ("v6", "armv6"), ("v7", "armv7-a"), ("v8", "armv8-a")):
        out = folder / f"app-{variant}"
        peers.run([compiler, f"-march={march}", "-marm", "-nostdlib", "-static", "-Os", "-o", str(out), str(source)])
        built[variant] = out
    return built


@pytest.mark.parametrize("variant", ["v5", "v6", "v7", "v8"])
def test_an_arm_program_is_labelled_with_its_variant(
    zeroimage: Zeroimage, arm_programs: dict[str, Path], tmp_path: Path, variant: str
) -> None:
    result = zeroimage("build", "-o", "arm.tar", str(arm_programs[variant]))
    assert warnings_of(result.stderr) == []
    image = images.read_image(tmp_path / "arm.tar", tmp_path)
    assert image.entry["platform"] == {"architecture": "arm", "os": "linux", "variant": variant}
    assert (image.config["os"], image.config["architecture"], image.config["variant"]) == ("linux", "arm", variant)


def test_an_arm_v6_program_on_the_bases_arm_v5_image_is_labelled_v6(
    zeroimage: Zeroimage, arm_programs: dict[str, Path], tmp_path: Path
) -> None:
    """hello-world has arm/v5 and arm/v7: a v6 program goes on v5 (containerd's fallback) and
    the image says v6, so that no v5 machine pulls it."""
    result = json.loads(
        zeroimage("build", "--json", "--from-archive", str(MULTIARCH), "-o", "v6.tar", str(arm_programs["v6"])).stdout
    )
    (built,) = result["platforms"]
    assert built["base"]["platform"] == {"architecture": "arm", "os": "linux", "variant": "v5"}
    image = images.read_image(tmp_path / "v6.tar", tmp_path)
    assert image.entry["platform"] == {"architecture": "arm", "os": "linux", "variant": "v6"}
    assert image.config["variant"] == "v6" and len(image.manifest["layers"]) == 2


def test_a_platform_older_than_the_program_needs(
    zeroimage: Zeroimage, arm_programs: dict[str, Path], tmp_path: Path
) -> None:
    """``--platform linux/arm/v5`` for an ARMv7 program wins, with a warning; --strict refuses it."""
    program = str(arm_programs["v7"])
    result = zeroimage("build", "--platform", "linux/arm/v5", "-o", "v5.tar", program)
    (warning,) = warnings_of(result.stderr)
    assert "linux/arm/v5" in warning and "v7" in warning
    assert images.read_image(tmp_path / "v5.tar", tmp_path).entry["platform"]["variant"] == "v5"
    before = fingerprint(tmp_path)
    refused(zeroimage("build", "--strict", "--platform", "linux/arm/v5", "-o", "s.tar", program, check=False), 1)
    assert fingerprint(tmp_path) == before


@pytest.mark.parametrize("platform", ["linux/arm/v9", "foo"])
def test_an_unknown_platform_is_a_usage_error(
    zeroimage: Zeroimage, arm_programs: dict[str, Path], tmp_path: Path, platform: str
) -> None:
    before = fingerprint(tmp_path)
    refused(zeroimage("build", "--platform", platform, str(arm_programs["v7"]), check=False), 2, repr(platform))
    assert fingerprint(tmp_path) == before
