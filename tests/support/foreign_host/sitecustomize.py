"""Make this Python look like a host that is not Linux (macOS, Windows), for ``make
test-foreign-host``: with this folder on PYTHONPATH, every Python process of the run — pytest and
each ``python -m zeroimage`` it starts (tests/support/cli.py passes PYTHONPATH on) — loads this
module at start-up, before any test or zeroimage code runs.

It takes away the calls that only Linux (or only POSIX) offers, so that zeroimage's portable
fallbacks are the code that runs, and makes zeroimage believe the host has no POSIX file modes:

* ``os.pread``, ``os.pwrite`` (Windows): positioned reads and writes become seek-then-read;
* ``os.copy_file_range``, ``os.sched_getaffinity`` (macOS, Windows);
* ``os.O_CLOEXEC``, ``os.O_NONBLOCK`` (Windows);
* ``signal.pthread_sigmask`` (Windows);
* ``sync_file_range`` (Linux only): :data:`zeroimage.files.WRITEBACK` is False;
* POSIX modes (Windows): :data:`zeroimage.files.POSIX_MODES` is False, so a file's mode in the
  image comes from what it is, not from its bits.

What it cannot make foreign: the path separator and Windows' text-mode descriptors (``os.sep``
and ``O_BINARY`` stay Linux's: faking them would break Python itself); unit tests check those
conversions on their own. It shadows any ``sitecustomize`` of the interpreter's own (the
project's Python has none; Debian's only sets up apport's crash hook) for the processes of that
run.
"""

import os
import signal

for _name in ("pread", "pwrite", "copy_file_range", "sched_getaffinity", "O_CLOEXEC", "O_NONBLOCK"):
    if hasattr(os, _name):
        delattr(os, _name)
if hasattr(signal, "pthread_sigmask"):
    del signal.pthread_sigmask

import zeroimage.files  # noqa: E402 - after the calls are gone, as on a host that never had them

zeroimage.files.POSIX_MODES = False
zeroimage.files.WRITEBACK = False
