"""What the host under test offers, for tests that assert a detail only some hosts have.

``make test-foreign-host`` runs the suite with Linux's calls hidden and without POSIX modes
(tests/support/foreign_host); a test that asserts such a detail is marked here and skips there,
saying why. The capabilities are zeroimage's own (:mod:`zeroimage.files`): what the code under
test believes, not a guess of the test's.
"""

from __future__ import annotations

import pytest

from zeroimage import files

#: For a test that asserts a mode taken from a host file's permission bits.
needs_posix_modes = pytest.mark.skipif(
    not files.POSIX_MODES,
    reason="asserts a mode taken from a host file's bits; this host has no POSIX modes (the foreign-host run)",
)


def without_modes_notice(stderr: str) -> str:
    """``stderr`` of a ``zeroimage build`` without the one warning every build gives on a host
    without POSIX modes, for a test that asserts a build says nothing else."""
    from zeroimage.layers.entries import NO_POSIX_MODES

    return stderr.replace(f"zeroimage: warning: {NO_POSIX_MODES}\n", "")
