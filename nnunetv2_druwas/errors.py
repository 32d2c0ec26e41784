"""The one exception type for problems a user can fix (bad input, missing runs), and the one place
where the command line turns expected failures into an error line.

:func:`report_errors` runs a command: a :class:`DruwasError` or an ``OSError`` (a full disk, a
missing permission, a folder where a file should be) is printed as one ``error: ...`` line that
names the path and what to do, and the exit status is 2, without a traceback. Messages of
:class:`DruwasError` name the file or case and say what to do.
"""
from __future__ import annotations

import errno
import sys
from typing import Callable


class DruwasError(Exception):
    """A user-facing error: bad input, a missing file or run, a refused overwrite."""


#: errno -> what to do about it (the error line names the path before it).
_OS_ADVICE = {
    errno.ENOSPC: "the disk is full: free space there (or choose a folder on another disk) and rerun",
    errno.EDQUOT: "your disk quota is used up: free space (or choose a folder on another disk) and rerun",
    errno.EACCES: "no permission: choose a folder you can write to, or ask for access, and rerun",
    errno.EPERM: "not permitted: choose a folder you can write to, or ask for access, and rerun",
    errno.EROFS: "the file system is read-only: choose another folder and rerun",
    errno.EISDIR: "it is a folder: give the path of a file",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
    errno.EEXIST: "a file is in the way of a folder: choose another path (or move the file)",
    errno.ENOENT: "it does not exist: check the path",
    errno.ENAMETOOLONG: "the name is too long: choose a shorter path",
}


def describe_os_error(error: OSError) -> str:
    """One line for an ``OSError``: the path(s), the system's reason and what to do.

    Args:
        error: the error, e.g. ``IsADirectoryError`` or ``OSError(28, 'No space left on device')``.
    """
    paths = " -> ".join(str(p) for p in (error.filename, error.filename2) if p is not None)
    reason = error.strerror or str(error) or type(error).__name__
    advice = _OS_ADVICE.get(error.errno, "check the path and rerun")
    line = f"{paths}: {reason}; {advice}" if paths else f"{reason}; {advice}"
    return " ".join(line.split())


def report_errors(command: Callable[[], int | None]) -> int:
    """Run ``command`` and return its exit status; expected failures become one ``error:`` line.

    A :class:`DruwasError` or ``OSError`` prints ``error: <message>`` on stderr and gives 2 (the
    files of the failed command are already cleaned up by :mod:`nnunetv2_druwas.files`), Ctrl-C
    prints ``interrupted`` and gives 130. Every entry point of the command line goes through here.

    Args:
        command: the work of the command; returns its exit status (None: 0).
    """
    try:
        return int(command() or 0)
    except DruwasError as e:
        print(f"error: {e}", file=sys.stderr)
    except OSError as e:
        print(f"error: {describe_os_error(e)}", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 2
