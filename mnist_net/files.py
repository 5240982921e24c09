"""Writing files so that nothing is ever half-written or overwritten by accident.

``write_atomic`` replaces a file in one step (temp file in the same folder, fsync, rename):
a crash, kill or full disk mid-write leaves the old file intact and no partial file under
the final name. ``write_new`` gives the bytes a name that did not exist before, never
replacing another file even when two writers pick the same name in the same second.
Model files and the models folder both use these. Non-goals: locking, Windows semantics.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

STALE_TEMP_SECONDS = 60  # a dead writer's temp file older than this is removed on the next write
FILE_MODE = 0o644  # mkstemp makes 0600; the files written here are meant to be shared
_TEMP_NAME = re.compile(r"^\..+\.(\d{1,9})-[A-Za-z0-9_]+\.tmp$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but not ours (EPERM), or unknown: keep its files
        return True
    return True


def remove_stale_temp_files(directory: str | os.PathLike) -> list[Path]:
    """Delete temp files left by writes whose process died mid-write; return what was removed.

    A temp file is ``.<name>.<pid>-<random>.tmp``. It is stale when its writer's process is
    gone and it has not changed for ``STALE_TEMP_SECONDS``; live writers are never touched.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(os.fspath(directory)))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if not match or int(match.group(1)) == os.getpid():
            continue
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime < STALE_TEMP_SECONDS:
                continue
            if not _pid_alive(int(match.group(1))):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue  # gone already, or not ours to delete
    return removed


def fsync_directory(directory: Path) -> None:
    """Make a rename durable; not every platform or filesystem allows it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_temp(directory: Path, name: str, data: bytes) -> Path:
    """The bytes in a fresh, fsynced temp file in ``directory`` (removed again if writing fails)."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.{os.getpid()}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), FILE_MODE)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def write_atomic(path: str | os.PathLike, data: bytes, what: str = "file") -> Path:
    """Write ``data`` to ``path`` atomically, replacing any file there; returns the path.

    Raises OSError (with its errno, e.g. ENOSPC) naming the path and saying that any
    earlier file there is unchanged; ``what`` names the thing in that message.
    """
    path = Path(path)
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(path.parent)
        tmp = _write_temp(path.parent, path.name, data)
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno is not None:
            raise OSError(
                e.errno, f"could not save the {what} to {path}: {e.strerror or e}; any earlier file there is unchanged"
            ) from e
        raise
    fsync_directory(path.parent)
    return path


def write_new(directory: str | os.PathLike, names: Iterable[str], data: bytes) -> Path:
    """Write ``data`` under the first of ``names`` that does not exist yet in ``directory``.

    The bytes go to a hidden temp file first, which is then hard-linked to its final name;
    ``link`` fails if that name exists, so no file is ever overwritten or seen half-written.
    Without hard links, the name is reserved exclusively (an empty file, which listings
    skip) and atomically replaced by the full file.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(directory)
    tmp = _write_temp(directory, "pending", data)
    try:
        for name in names:
            target = directory / name
            try:
                os.link(tmp, target)
            except FileExistsError:
                continue
            except OSError:
                try:
                    os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE))
                except FileExistsError:
                    continue
                os.replace(tmp, target)
            fsync_directory(directory)
            return target
        raise FileExistsError(f"could not find a free file name in {directory}")
    finally:
        tmp.unlink(missing_ok=True)
