"""Untrusted text in the messages the SBOM readers give back: quoted, escaped, cut short."""

from __future__ import annotations

_SHOWN = 100  # characters of an untrusted string a message shows


def shown(text: str, limit: int = _SHOWN) -> str:
    """``text`` as a message may show it: quoted, every control character escaped (so an
    escape sequence read from a binary prints as text), cut at ``limit`` characters."""
    return repr(text[:limit]) + ("…" if len(text) > limit else "")
