"""The command line: a thin layer over the library (:mod:`zeroimage.api`).

``commands`` turns flags into API calls and results into lines; ``reporters`` shows warnings,
steps and progress. The only part of zeroimage that prints, exits, or installs signal handlers.
"""

from zeroimage.cli.commands import main

__all__ = ["main"]
