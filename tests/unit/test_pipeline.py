"""The build pipeline through its seams, in process: sinks of the caller's own (one that records
what it is handed) and a target policy of the caller's own (one that records when it is asked).
The pipeline knows neither: what it hands a sink is a whole, verifiable image; it asks a target
at fixed points, in order, and obeys what it says."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.images import tiny_program
from zeroimage.elf import BinaryInfo
from zeroimage.errors import RunCheckError, UsageError
from zeroimage.image import Attachments, BaseImage, ImageFormat, ImageGraph, LayerTap, Source, WriteResult
from zeroimage.layers.entries import Entry
from zeroimage.oci import Descriptor, Platform
from zeroimage.options import BuildOptions
from zeroimage.pipeline import build
from zeroimage.progress import NullReporter, Reporter
from zeroimage.rootfs import FileTree
from zeroimage.targets import Target
from zeroimage.transports import Location, TransportOptions


@dataclass
class RecordingSink:
    """A sink that keeps what it is handed: the graph, each blob's bytes as it reads them."""

    description: str = "recording"
    fixed_format: ImageFormat | None = None
    needs_layer_files: bool = True
    takes_attachments: bool = True
    graphs: list[ImageGraph] = field(default_factory=list)
    attached: list[Attachments | None] = field(default_factory=list)
    blobs: dict[str, bytes] = field(default_factory=dict)
    discarded: bool = False

    def layer_tap(self, reporter: Reporter) -> LayerTap | None:
        return None

    def layer_sources(self) -> list[Source]:
        return []

    def write(self, graph: ImageGraph, reporter: Reporter, attachments: Attachments | None = None) -> list[WriteResult]:
        self.graphs.append(graph)
        self.attached.append(attachments)
        for digest, blob in graph.blobs.items():
            stream = blob.open()
            try:
                self.blobs[digest] = b"".join(iter(lambda: stream.read(1 << 16), b""))  # noqa: B023
            finally:
                stream.close()
        return [WriteResult(self.description, graph.root.digest)]

    def discard(self) -> None:
        self.discarded = True


class RecordingTarget(Target):
    """A platform whose rules are a list of what it was asked, and a few answers of its own."""

    name = "recording"

    def __init__(self, warnings: Sequence[str] = (), refuse_at: str = "") -> None:
        self.asked: list[str] = []
        self.warnings = list(warnings)
        self.refuse_at = refuse_at

    def _ask(self, what: str) -> None:
        self.asked.append(what)
        if what == self.refuse_at:
            raise UsageError(f"recording target refuses at {what}")

    def check_request(self, options: BuildOptions) -> None:
        self._ask("check_request")

    def check_platform(self, platform: Platform) -> None:
        self._ask(f"check_platform {platform}")

    def check_base(self, base: BaseImage) -> None:
        self._ask("check_base")

    def adjust(self, entries: Sequence[Entry], program: str) -> tuple[list[Entry], list[str]]:
        self._ask("adjust")
        return list(entries), []

    def check_plan(self, program: Path, info: BinaryInfo, entrypoint: str, tree: FileTree) -> list[str]:
        self._ask(f"check_plan {entrypoint}")
        return self.warnings

    def check_size(self, uncompressed: int) -> None:
        self._ask("check_size")

    def check_result(self, root: Descriptor) -> None:
        self._ask(f"check_result {root.media_type}")


class Said(NullReporter):
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warn(self, message: str) -> None:
        self.warnings.append(message)


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZEROIMAGE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    monkeypatch.chdir(tmp_path)


def run(options: BuildOptions, sink: RecordingSink, reporter: Reporter | None = None) -> Any:
    def open_outputs(destinations: Sequence[Location], transport: TransportOptions) -> list[RecordingSink]:
        return [sink]

    return build(options, reporter, open_outputs)


def test_a_sink_is_handed_a_whole_image_whose_every_digest_holds(tmp_path: Path) -> None:
    program = tiny_program(tmp_path / "app")
    sink = RecordingSink()
    result = run(BuildOptions.parse(programs=[program], env={"A": "1"}, source_date_epoch=1), sink)
    (graph,) = sink.graphs
    assert graph.root.digest == result.digest
    for digest, data in {**graph.documents, **sink.blobs}.items():
        assert "sha256:" + hashlib.sha256(data).hexdigest() == digest  # every byte what it is named
    order = [d.digest for d in graph.children_first()]
    assert order[-1] == graph.root.digest and set(order) == set(graph.documents) | set(graph.blobs)
    manifest = json.loads(graph.documents[graph.root.digest])
    config = json.loads(graph.documents[manifest["config"]["digest"]])
    assert config["config"]["Env"][-1] == "A=1" and config["created"] == "1970-01-01T00:00:01Z"
    assert graph.new == (manifest["layers"][0]["digest"],)  # the layer the build made


def test_the_target_is_asked_at_its_points_in_order(tmp_path: Path) -> None:
    program = tiny_program(tmp_path / "app")
    target = RecordingTarget()
    run(BuildOptions(programs=(program,), target=target), RecordingSink())
    assert target.asked == [
        "check_request",
        "check_platform linux/amd64",
        "adjust",  # the first layer, made while the plan is checked (the target allows it)
        "adjust",  # the extra files
        "adjust",  # the program
        "check_plan /app",
        "check_size",
        "check_result application/vnd.oci.image.manifest.v1+json",
    ]


def test_a_targets_warnings_are_warned_and_strict_makes_them_errors(tmp_path: Path) -> None:
    program = tiny_program(tmp_path / "app")
    host = Said()  # what this host warns of anyway (a host without POSIX modes says so)
    run(BuildOptions(programs=(program,), target=RecordingTarget()), RecordingSink(), host)
    said = Said()
    run(BuildOptions(programs=(program,), target=RecordingTarget(warnings=["not here"])), RecordingSink(), said)
    assert said.warnings == [*host.warnings, "not here"]
    sink = RecordingSink()
    with pytest.raises(RunCheckError, match="not here"):
        run(BuildOptions(programs=(program,), target=RecordingTarget(["not here"]), strict=True), sink)
    assert sink.discarded and not sink.graphs  # nothing handed over, what was begun undone


def test_a_target_that_refuses_the_result_stops_the_build_before_any_write(tmp_path: Path) -> None:
    program = tiny_program(tmp_path / "app")
    sink = RecordingSink()
    target = RecordingTarget(refuse_at="check_result application/vnd.oci.image.manifest.v1+json")
    with pytest.raises(UsageError, match="refuses at check_result"):
        run(BuildOptions(programs=(program,), target=target), sink)
    assert not sink.graphs and sink.discarded


def test_the_pipeline_names_no_target() -> None:
    """Every rule of a platform lives in its policy: the pipeline has no branch on a name."""
    import zeroimage.pipeline

    text = Path(zeroimage.pipeline.__file__).read_text()
    assert '"lambda"' not in text and "aws_lambda" not in text and ".name ==" not in text
