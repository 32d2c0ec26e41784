"""Outputs that appear whole or not at all, and outputs that belong together replaced together.

Every file or folder the harness writes for a user goes through :func:`replaced_together` (or its
short forms :func:`write_text`, :func:`write_bytes`, :func:`staged_folder`):

1. each output is written to a temporary beside its target (same folder, so a rename moves it);
2. on success the group is committed: a small journal listing the renames is written, the old
   outputs are moved aside, the new ones renamed into place, the old ones deleted, the journal
   removed;
3. on any failure before the commit (an exception, ``KeyboardInterrupt``, a full disk) the
   temporaries (and the folders :meth:`Group.makedirs` made) are removed and the old outputs stay
   as they were; an ``OSError`` is made to name the output it concerns, not a temporary. A rename
   that fails during the commit rolls back the renames already made. SIGINT and SIGTERM wait until
   the commit is over. A file output whose path is a folder is refused (never replaced).

A process killed during the commit (SIGKILL, power loss) leaves the journal; the next writer of the
same outputs completes the group from it first (:func:`recover`, which every group calls for its
targets), and removes the temporaries of killed writers. Both are noted on stderr. Temporaries and
journals carry the host and process id of their writer, so a writer that is still running is left
alone (on another host: while its files are younger than :data:`STALE_AFTER` seconds).

Files and folders get the user's umask (0644 and 0755 under the usual umask 022).

Example::

    from nnunetv2_druwas.files import replaced_together

    with replaced_together() as group:
        table.to_csv(group.path(out / "metrics.csv"), index=False)
        summary.to_csv(group.path(out / "metrics_summary.csv"), index=False)
    # both files are new, or (after an error) both are the old ones
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from nnunetv2_druwas.errors import DruwasError

JOURNAL_PREFIX = ".druwas-journal."
#: seconds after which a temporary or journal of another host counts as left by a killed writer.
STALE_AFTER = 3600
_HOST = re.sub(r"[^A-Za-z0-9-]", "_", socket.gethostname()) or "host"
_OWNED = re.compile(r"^\.(?P<name>.+)\.(?P<host>[A-Za-z0-9_-]+)-(?P<pid>\d+)-[0-9a-f]{8}\.(?:tmp|old)$")
_JOURNAL = re.compile(rf"^{re.escape(JOURNAL_PREFIX)}(?P<host>[A-Za-z0-9_-]+)-(?P<pid>\d+)-[0-9a-f]{{8}}\.json"
                      rf"(?P<partial>\.tmp)?$")


@dataclass(frozen=True)
class _Entry:
    target: Path
    temp: Path | None    # None: the commit removes the target
    backup: Path         # where the old target waits during the commit

    def as_json(self) -> dict:
        return {"target": str(self.target), "temp": None if self.temp is None else str(self.temp),
                "backup": str(self.backup)}


class Group:
    """Outputs to be replaced together; made by :func:`replaced_together`.

    Ask for a temporary with :meth:`path` (a file) or :meth:`folder`, write it completely, and
    leave the ``with`` block: the group is committed. :meth:`remove` adds a target that the commit
    deletes (e.g. a file the new outputs no longer include).
    """

    def __init__(self) -> None:
        self._token = f"{_HOST}-{os.getpid()}-{secrets.token_hex(4)}"
        self._entries: dict[Path, _Entry] = {}
        self._created: list[Path] = []   # folders made by makedirs, deepest first

    def _add(self, target: str | Path, make: str | None) -> _Entry:
        target = Path(os.path.abspath(target))
        if target in self._entries:
            raise ValueError(f"{target} is already part of this group")
        if not target.parent.is_dir():
            raise DruwasError(f"cannot write {target}: the folder {target.parent} does not exist")
        if make == "file" and target.is_dir() and not target.is_symlink():
            raise DruwasError(f"cannot write {target}: it is a folder; give the path of a file (nothing was "
                              "written, the folder is left as it is)")
        recover([target])
        temp = None if make is None else target.with_name(f".{target.name}.{self._token}.tmp")
        entry = _Entry(target, temp, target.with_name(f".{target.name}.{self._token}.old"))
        self._entries[target] = entry   # first: an error while making the temporary names the target
        if make == "file":
            os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # mode: 0666 minus umask
        elif make == "folder":
            os.mkdir(temp, 0o777)
        return entry

    def makedirs(self, folder: str | Path) -> Path:
        """Create ``folder`` and its missing parents now; if the group is discarded, those it created
        are removed again (when still empty), so a failed command leaves no empty folders behind.

        Args:
            folder: the folder that outputs of this group go into.
        """
        folder = Path(os.path.abspath(folder))
        missing = [p for p in (folder, *folder.parents) if not p.exists()]
        folder.mkdir(parents=True, exist_ok=True)
        self._created += missing
        return folder

    def path(self, target: str | Path) -> Path:
        """An empty temporary file beside ``target`` to write ``target``'s new content to.

        Args:
            target: the file the commit replaces (or creates); its folder must exist.
        """
        return self._add(target, "file").temp

    def folder(self, target: str | Path, replace: Sequence[str | Path] = ()) -> Path:
        """An empty temporary folder beside ``target`` that the commit renames to ``target``.

        Args:
            target: the folder the commit creates; its parent must exist. If it exists, it must be
                empty or be listed in ``replace``.
            replace: existing folders the commit deletes (e.g. a dataset being overwritten, which
                may be ``target`` itself).

        Raises:
            DruwasError: when ``target`` exists, is not empty and is not in ``replace``.
        """
        target = Path(os.path.abspath(target))
        replaced = {Path(os.path.abspath(p)) for p in replace}
        if target not in replaced and target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise DruwasError(f"{target} already exists and is not empty; it is not replaced")
        staging = self._add(target, "folder").temp
        for folder in sorted(replaced - {target}):
            self.remove(folder)
        return staging

    def remove(self, target: str | Path) -> None:
        """Delete ``target`` (file or folder) with the commit, if it exists then.

        Args:
            target: the file or folder to delete.
        """
        self._add(target, None)

    def write_text(self, target: str | Path, text: str, *, executable: bool = False) -> None:
        """Write ``text`` as ``target``'s new content.

        Args:
            target: the file.
            text: its content (UTF-8).
            executable: also set the execute bits that the umask allows (scripts).
        """
        self.write_bytes(target, text.encode(), executable=executable)

    def write_bytes(self, target: str | Path, data: bytes, *, executable: bool = False) -> None:
        """Write ``data`` as ``target``'s new content (see :meth:`write_text`)."""
        temp = self.path(target)
        temp.write_bytes(data)
        if executable:
            temp.chmod(0o777 & ~_umask())

    def discard(self, error: BaseException | None = None) -> None:
        """Remove every temporary (and the folders :meth:`makedirs` created); the targets stay as they were.

        Args:
            error: the failure that ends the group. An ``OSError`` that names no path (a write to a
                full disk) or a temporary is made to name the output that was being written.
        """
        if isinstance(error, OSError):
            self._name_output(error)
        for entry in self._entries.values():
            if entry.temp is not None:
                _delete(entry.temp)
        self._entries.clear()
        for folder in self._created:
            try:
                folder.rmdir()
            except OSError:   # not empty (something else is in it) or already gone
                pass
        self._created.clear()

    def _name_output(self, error: OSError) -> None:
        """Point ``error.filename`` at the output being written instead of nothing or a temporary."""
        if error.filename2 is not None or not self._entries:
            return
        for entry in self._entries.values():
            if entry.temp is not None and error.filename is not None and \
                    (Path(error.filename) == entry.temp or entry.temp in Path(error.filename).parents):
                error.filename = str(entry.target / Path(error.filename).relative_to(entry.temp))
                return
        if error.filename is None:
            error.filename = str(list(self._entries)[-1])

    def commit(self) -> None:
        """Replace every target by its temporary (and delete the removed ones), all or none."""
        entries = list(self._entries.values())
        if not entries:
            return
        journal = entries[0].target.parent / f"{JOURNAL_PREFIX}{self._token}.json"
        started = False
        with _signals_deferred():
            try:
                for entry in entries:
                    if entry.temp is not None and entry.temp.is_file():
                        _fsync(entry.temp)
                _write_journal(journal, entries)
                started = True
                for entry in entries:
                    _swap(entry)
            except BaseException as error:
                if started:
                    _roll_back(entries)
                self.discard(error)
                journal.unlink(missing_ok=True)
                journal.with_name(journal.name + ".tmp").unlink(missing_ok=True)
                raise
            self._entries.clear()
            self._created.clear()
            journal.unlink(missing_ok=True)
        for entry in entries:   # a kill from here on leaves only these, which recover() removes
            _delete(entry.backup)


@contextmanager
def replaced_together() -> Iterator[Group]:
    """A :class:`Group` of outputs, committed when the block ends normally and discarded (the old
    outputs untouched, no temporary left) when it raises, ``KeyboardInterrupt`` included.

    An ``OSError`` that names no path (a write to a full disk) or a temporary of the group is made to
    name the output it was writing, so that the error line says where the disk is full.
    """
    group = Group()
    try:
        yield group
    except BaseException as error:
        group.discard(error)
        raise
    group.commit()


def write_text(path: str | Path, text: str, *, executable: bool = False) -> None:
    """Replace one file's content atomically (see :meth:`Group.write_text`)."""
    with replaced_together() as group:
        group.write_text(path, text, executable=executable)


def write_bytes(path: str | Path, data: bytes) -> None:
    """Replace one file's content atomically (see :meth:`Group.write_bytes`)."""
    with replaced_together() as group:
        group.write_bytes(path, data)


@contextmanager
def staged_folder(target: str | Path, replace: Sequence[str | Path] = ()) -> Iterator[Path]:
    """A temporary folder beside ``target`` that becomes ``target`` only if the block succeeds.

    On success the folders in ``replace`` (e.g. an existing dataset being overwritten, which may be
    ``target`` itself) are deleted and the new folder renamed into place, together; on any
    exception the temporary folder is removed and nothing else is touched. (The short form of
    :meth:`Group.folder`, whose arguments and errors it has.)
    """
    with replaced_together() as group:
        yield group.folder(target, replace)


def recover(targets: Iterable[str | Path]) -> None:
    """Finish what killed writers of these outputs left: complete every interrupted commit whose
    journal names one of them, and remove their temporaries. Writers still running are left alone.

    Every :class:`Group` calls this for its targets; call it yourself before reading outputs that a
    killed process may have been replacing.

    Args:
        targets: output files or folders (their folders are searched).
    """
    by_folder: dict[Path, set[str]] = {}
    for target in targets:
        target = Path(os.path.abspath(target))
        by_folder.setdefault(target.parent, set()).add(target.name)
    for folder, names in by_folder.items():
        try:
            listing = sorted(os.scandir(folder), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            continue
        wanted = {str(folder / name) for name in names}
        for item in listing:   # journals first: completing them uses the temporaries
            match = _JOURNAL.match(item.name)
            if match and not _writer_alive(match["host"], int(match["pid"]), Path(item.path)):
                _recover_journal(Path(item.path), wanted, partial=bool(match["partial"]))
        for item in listing:
            match = _OWNED.match(item.name)
            if match and match["name"] in names and os.path.lexists(item.path) and \
                    not _writer_alive(match["host"], int(match["pid"]), Path(item.path)):
                _delete(Path(item.path))
                _note(f"removed {item.path}, left by a killed writer (process {match['pid']} on {match['host']})")


def _recover_journal(journal: Path, wanted: set[str], partial: bool) -> None:
    if partial:   # the journal itself was never complete: the commit had not begun
        journal.unlink(missing_ok=True)
        return
    try:
        entries = [_Entry(Path(e["target"]), None if e["temp"] is None else Path(e["temp"]), Path(e["backup"]))
                   for e in json.loads(journal.read_text())["entries"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        _note(f"{journal} is not a readable journal ({e}); it is left for you to inspect")
        return
    if not wanted & {str(e.target) for e in entries}:
        return
    for entry in entries:
        if entry.temp is None or os.path.lexists(entry.temp):
            _swap(entry)
    for entry in entries:
        _delete(entry.backup)
    journal.unlink(missing_ok=True)
    _note(f"completed an interrupted replacement of {len(entries)} output(s) from {journal}: "
          f"{', '.join(str(e.target) for e in entries)}")


def _swap(entry: _Entry) -> None:
    """Move the old target aside and the temporary into place (or only aside, for a removal)."""
    if os.path.lexists(entry.target) and (entry.temp is None or os.path.lexists(entry.temp)):
        os.replace(entry.target, entry.backup)
    if entry.temp is not None and os.path.lexists(entry.temp):
        os.replace(entry.temp, entry.target)


def _roll_back(entries: Sequence[_Entry]) -> None:
    """Undo a commit that failed part way: old targets back, new ones and temporaries gone."""
    for entry in entries:
        moved_in = entry.temp is not None and not os.path.lexists(entry.temp)
        if moved_in:
            _delete(entry.target)
        elif entry.temp is not None:
            _delete(entry.temp)
        if os.path.lexists(entry.backup):
            os.replace(entry.backup, entry.target)


def _write_journal(journal: Path, entries: Sequence[_Entry]) -> None:
    partial = journal.with_name(journal.name + ".tmp")
    partial.write_text(json.dumps({"entries": [e.as_json() for e in entries]}, indent=1))
    _fsync(partial)
    os.replace(partial, journal)


def _writer_alive(host: str, pid: int, path: Path) -> bool:
    """Whether the writer of a temporary may still be running (see the module docstring)."""
    if host != _HOST:
        try:
            return time.time() - path.lstat().st_mtime < STALE_AFTER
        except FileNotFoundError:
            return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:   # a zombie (killed, not yet reaped) writes nothing any more
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _delete(path: Path) -> None:
    """Remove a file or folder if it is there; a failure (e.g. a read-only disk) is ignored, so that
    cleaning up never hides the error that made it necessary."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        try:
            path.unlink()
        except OSError:
            pass


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _note(text: str) -> None:
    print(f"note: {text}", file=sys.stderr)


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP wait until the block is over (main thread, POSIX only)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
