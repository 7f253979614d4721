"""Writing an image into an existing ``oci:DIR`` that someone else prepared.

A layout directory may be shared (a CI workspace, a cache volume): what it holds is read as
untrusted. Its ``index.json`` is read only as a small regular file and must be a valid index;
``blobs/`` or ``blobs/sha256/`` that are symlinks are refused rather than written through; a
blob already there is kept only if its bytes match its name. Each refusal is one clean line,
exit 1, within bounded memory and time, with the layout (and whatever a link points at) left as
it was; each repair leaves a layout that skopeo and umoci read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support import peers
from tests.support.hostile_layers import Run, run_measured

#: Peak RSS a refusal may take, in kB (a build takes about 40 MB).
REFUSAL_RSS_KB = 150_000


def first_image(tmp_path: Path, program: Path) -> Path:
    """A layout holding one image, tagged v1, as zeroimage writes it."""
    layout = tmp_path / "layout"
    run = run_measured(["build", "-o", f"oci:{layout}:v1", str(program)], tmp_path)
    assert run.returncode == 0, run.told()
    return layout


def second_image(tmp_path: Path, layout: Path, program: Path) -> Run:
    """Another image (same layer, other config) into the same layout, tagged v2."""
    return run_measured(["build", "--env", "V=2", "-o", f"oci:{layout}:v2", str(program)], tmp_path, timeout=60)


def snapshot(root: Path) -> dict[str, tuple[str, int, bytes]]:
    """Every path under ``root`` → (kind, size, bytes of a small regular file); links not followed."""
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        kind = "link" if path.is_symlink() else "dir" if path.is_dir() else "file" if path.is_file() else "other"
        data = path.read_bytes() if kind == "file" and st.st_size < 1 << 20 else b""
        out[str(path.relative_to(root))] = (kind, st.st_size, data)
    return out


def assert_refused(run: Run, expect: str) -> None:
    assert run.returncode == 1, run.told()
    assert "Traceback" not in run.stderr, run.told()
    [line] = run.error_lines()
    assert line.startswith("zeroimage: error: ") and expect in line, run.told()
    assert run.peak_rss_kb < REFUSAL_RSS_KB, run.told()


def layer_blob(layout: Path) -> Path:
    index = json.loads((layout / "index.json").read_bytes())
    manifest = json.loads((layout / "blobs" / "sha256" / index["manifests"][0]["digest"][7:]).read_bytes())
    return layout / "blobs" / "sha256" / manifest["layers"][-1]["digest"][7:]


def assert_sound(layout: Path, *tags: str) -> None:
    """Every blob holds what its name says, and the peers read every tag."""
    for blob in (layout / "blobs" / "sha256").iterdir():
        assert not blob.is_symlink(), blob
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name, f"{blob} does not match its name"
    for tag in tags:
        peers.skopeo_inspect(f"oci:{layout}:{tag}")
    peers.umoci_unpack(layout, tags[-1], layout.parent / "bundle")


# -- refused -----------------------------------------------------------------------------------


def outside_index(layout: Path) -> Path:
    """index.json moved out of the layout, a symlink to it in its place."""
    outside = layout.parent / "outside.json"
    (layout / "index.json").rename(outside)
    (layout / "index.json").symlink_to(outside)
    return outside


def huge_index(layout: Path) -> Path:
    with open(layout / "index.json", "r+b") as out:
        out.truncate(1 << 30)  # a gigabyte on paper: read whole, it cost 2 GB
    return layout


def fifo_index(layout: Path) -> Path:
    (layout / "index.json").unlink()
    os.mkfifo(layout / "index.json")  # read as a file, it blocked the build for ever
    return layout


def index_bytes(data: bytes) -> Callable[[Path], Path]:
    def change(layout: Path) -> Path:
        (layout / "index.json").write_bytes(data)
        return layout

    return change


def index_entries(*entries: object) -> Callable[[Path], Path]:
    def change(layout: Path) -> Path:
        index = json.loads((layout / "index.json").read_bytes())
        index["manifests"] += list(entries)
        (layout / "index.json").write_bytes(json.dumps(index).encode())
        return layout

    return change


def outside_dir(name: str) -> Callable[[Path], Path]:
    """``name`` (a directory of the layout) moved out, a symlink to it in its place."""

    def change(layout: Path) -> Path:
        outside = layout.parent / "outside-dir"
        (layout / name).rename(outside)
        (layout / name).symlink_to(outside)
        return outside

    return change


REFUSALS = {
    "index.json-symlink": (outside_index, "is a symlink"),
    "index.json-1GB": (huge_index, "is larger than 4194304 bytes"),
    "index.json-fifo": (fifo_index, "is not a regular file"),
    "index.json-nesting-bomb": (index_bytes(b"[" * 100_000 + b"]" * 100_000), "not valid JSON"),
    "index.json-an-array": (index_bytes(b"[]"), "not a JSON object"),
    "index.json-manifests-an-object": (index_bytes(b'{"schemaVersion":2,"manifests":{}}'), "not a list"),
    "index.json-entry-a-number": (index_entries(5), "entry 1 is not a JSON object"),
    "index.json-entry-digest-traversal": (
        index_entries({"mediaType": "x", "digest": "sha256:../../../etc/passwd", "size": 1}),
        "invalid digest",
    ),
    "blobs-symlink": (outside_dir("blobs"), "is a symlink"),
    "blobs-sha256-symlink": (outside_dir("blobs/sha256"), "is a symlink"),
}


@pytest.mark.parametrize(("change", "expect"), REFUSALS.values(), ids=REFUSALS.keys())
def test_a_hostile_layout_is_refused_and_left_as_it_was(
    change: Callable[[Path], Path], expect: str, static_binary: Path, tmp_path: Path
) -> None:
    layout = first_image(tmp_path, static_binary)
    elsewhere = change(layout)
    before, before_elsewhere = snapshot(layout), snapshot(elsewhere) if elsewhere.is_dir() else {}
    before_file = elsewhere.read_bytes() if elsewhere.is_file() else b""
    try:
        run = second_image(tmp_path, layout, static_binary)
    finally:  # release a reader blocked on the FIFO (before the fix), so that it ends
        with contextlib.suppress(OSError):
            os.close(os.open(layout / "index.json", os.O_WRONLY | os.O_NONBLOCK))
    assert_refused(run, expect)
    assert run.seconds < 30, run.told()
    assert snapshot(layout) == before  # nothing written, no temporary file left
    if elsewhere.is_dir():
        assert snapshot(elsewhere) == before_elsewhere  # nothing written through the link
    elif elsewhere.is_file():
        assert elsewhere.read_bytes() == before_file


# -- repaired ----------------------------------------------------------------------------------


def test_a_blob_whose_bytes_do_not_match_its_name_is_written_again(static_binary: Path, tmp_path: Path) -> None:
    """Ten bytes changed in a blob the new image shares: before, kept because its size was
    right, and the layout then held a layer that skopeo and umoci refuse."""
    layout = first_image(tmp_path, static_binary)
    blob = layer_blob(layout)
    data = bytearray(blob.read_bytes())
    data[100:110] = bytes(10)
    blob.write_bytes(bytes(data))
    run = second_image(tmp_path, layout, static_binary)
    assert run.returncode == 0, run.told()
    assert_sound(layout, "v1", "v2")


def test_a_blob_that_is_a_symlink_is_replaced_not_followed(static_binary: Path, tmp_path: Path) -> None:
    """The blob a symlink to a file outside: before, kept as it was (a layout that read
    whatever the link pointed at next). Now a regular file; the outside file untouched."""
    layout = first_image(tmp_path, static_binary)
    blob = layer_blob(layout)
    outside = tmp_path / "outside-blob"
    shutil.move(blob, outside)
    blob.symlink_to(outside)
    before = outside.read_bytes()
    run = second_image(tmp_path, layout, static_binary)
    assert run.returncode == 0, run.told()
    assert outside.read_bytes() == before
    assert_sound(layout, "v1", "v2")


def test_an_untouched_layout_takes_a_second_image(static_binary: Path, tmp_path: Path) -> None:
    """The positive control: both tags there, every blob sound, the shared layer written once."""
    layout = first_image(tmp_path, static_binary)
    blob = layer_blob(layout)
    written = blob.stat().st_mtime_ns
    run = second_image(tmp_path, layout, static_binary)
    assert run.returncode == 0, run.told()
    assert blob.stat().st_mtime_ns == written  # a blob that matches its name is kept
    assert peers.ref_names(layout) == ["v1", "v2"]
    assert_sound(layout, "v1", "v2")
