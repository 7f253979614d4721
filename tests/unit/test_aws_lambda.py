"""Lambda's size limit at its very edge; the end-to-end tests (tests/e2e/test_lambda.py) judge
whole images a few megabytes either side of it."""

from __future__ import annotations

from zeroimage.aws_lambda import size_problem

#: AWS's limit: 10 GB uncompressed, all layers together, counted in GiB.
LIMIT = 10 << 30


def test_an_image_of_exactly_10_gib_fits() -> None:
    assert size_problem(LIMIT) == ""
    assert size_problem(0) == ""


def test_one_byte_more_does_not() -> None:
    assert "at most 10 GiB" in size_problem(LIMIT + 1)
