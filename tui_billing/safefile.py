"""Files and folders the project writes: never through a planted link, owner-only.

One mechanism for every file tui-billing writes (download PDFs, merged PDFs,
xDR rejects files, maildir messages, exports):

- The data goes to a fresh temp file in the target's own folder, named
  `.<name>.<16 random hex>.tmp` and created with O_CREAT|O_EXCL|O_NOFOLLOW:
  creation fails rather than follow or reuse anything already there (a
  symlink planted at a predictable name cannot redirect the write; the name
  is not predictable anyway).
- It is then renamed over the final name with os.replace, which replaces a
  symlink at the final name itself and never writes through it.  Readers see
  the old file or the new one, never half of one.
- Files are created 0600 (owner only) unless the caller says the file is
  meant to be shared; folders the project creates are 0700, every missing
  level of them (not only the last, as `Path.mkdir(parents=True, mode=…)`
  would do).  Existing folders and files keep the modes their owner gave them.

Out of scope: a folder on the way that another user has replaced by a
symlink (only the owner of a folder can do that to their own folders).
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
_TRIES = 16

Data = bytes | bytearray | memoryview | str | Callable[[object], object]


def create_exclusive(path: str | os.PathLike, mode: int = PRIVATE_FILE) -> int:
    """A new file at `path` (a file descriptor open for writing).

    Fails with FileExistsError if anything is there, a symlink included
    (dangling or not): nothing is ever followed or reused.
    """
    return os.open(path, _CREATE, mode)


def open_exclusive(
    path: str | os.PathLike,
    mode: int = PRIVATE_FILE,
    *,
    text: bool = False,
    encoding: str = "utf-8",
    newline: str | None = None,
):
    """`create_exclusive` as a file object (binary, or text with `text=True`)."""
    fd = create_exclusive(path, mode)
    try:
        if text:
            return os.fdopen(fd, "w", encoding=encoding, newline=newline)
        return os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        raise


def temp_name(target: Path) -> Path:
    """A fresh, unpredictable name beside `target` (hidden, ends in .tmp)."""
    return target.with_name(f".{target.name[:200]}.{secrets.token_hex(8)}.tmp")


class AtomicFile:
    """A file being written to a temp name beside `path`; `commit()` renames it
    into place, `discard()` removes it.  As a context manager: committed when
    the block ends normally, discarded when it raises.

        with AtomicFile(path, text=True, newline="") as fh:
            csv.writer(fh).writerow(...)
    """

    def __init__(
        self,
        path: str | os.PathLike,
        mode: int = PRIVATE_FILE,
        *,
        text: bool = False,
        encoding: str = "utf-8",
        newline: str | None = None,
        fsync: bool = True,
    ):
        self.path = Path(path)
        self.fsync = fsync
        self.done = False
        for _ in range(_TRIES):
            tmp = temp_name(self.path)
            try:
                self.file = open_exclusive(tmp, mode, text=text, encoding=encoding, newline=newline)
            except FileExistsError:
                continue  # astronomically unlikely: another name
            break
        else:  # pragma: no cover - 16 collisions of 64 random bits
            raise FileExistsError(f"cannot create a temp file beside {self.path}")
        self.tmp = tmp

    def commit(self) -> Path:
        """Flush, (fsync), close and rename over the final name; returns it."""
        if self.done:
            raise ValueError(f"{self.path}: already committed or discarded")
        try:
            self.file.flush()
            if self.fsync:
                os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.tmp, self.path)
        except BaseException:
            self.discard()
            raise
        self.done = True
        return self.path

    def discard(self) -> None:
        """Close and remove the temp file; the final name is untouched."""
        self.done = True
        try:
            self.file.close()
        except OSError:
            pass
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass

    def __enter__(self):
        return self.file

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.done:
            return
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def atomic_write(
    path: str | os.PathLike,
    data: Data,
    mode: int = PRIVATE_FILE,
    *,
    encoding: str = "utf-8",
    newline: str | None = None,
    fsync: bool = True,
) -> Path:
    """Write `data` (bytes, str, or a callable given the open file) to `path`
    atomically through an exclusive temp file; returns the path."""
    text = isinstance(data, str)
    with AtomicFile(path, mode, text=text, encoding=encoding, newline=newline, fsync=fsync) as fh:
        if callable(data):
            data(fh)
        else:
            fh.write(data)
    return Path(path)


def make_dirs(path: str | os.PathLike, mode: int = PRIVATE_DIR) -> Path:
    """Create the folder `path` and every missing folder above it, each with
    exactly `mode` (default 0700, whatever the umask).  Folders that exist are
    left as they are.  NotADirectoryError if something on the way is not a
    folder."""
    path = Path(os.path.abspath(os.fspath(path)))
    missing: list[Path] = []
    probe = path
    while not probe.exists():
        if probe.is_symlink():  # a dangling link: never create through it
            raise FileExistsError(f"{probe} is a broken symbolic link")
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise NotADirectoryError(f"{probe} is not a directory")
    for folder in reversed(missing):
        try:
            os.mkdir(folder, mode)
        except FileExistsError:
            if not folder.is_dir():
                raise NotADirectoryError(f"{folder} is not a directory") from None
            continue  # created meanwhile by someone else: theirs, left alone
        _set_mode(folder, mode)
    return path


def _set_mode(folder: Path, mode: int) -> None:
    """The umask may have taken bits away from a folder just made: put them back,
    through a descriptor of the folder itself (never a link swapped in)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW | _CLOEXEC)
    except OSError:
        return
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) != mode:
            os.fchmod(fd, mode)
    finally:
        os.close(fd)


def nearest_existing(path: str | os.PathLike) -> Path:
    """`path` or its closest ancestor that exists (what creating it would start from)."""
    probe = Path(os.path.abspath(os.fspath(path)))
    while not probe.exists() and not probe.is_symlink() and probe.parent != probe:
        probe = probe.parent
    return probe


def check_creatable_dir(path: str | os.PathLike) -> str | None:
    """Why the folder `path` could not be used or created, or None if it can.

    Writes nothing: checks the folder itself if it exists, otherwise the
    closest existing ancestor (a folder, writable)."""
    path = Path(os.path.abspath(os.fspath(path)))
    if path.exists():
        if not path.is_dir():
            return f"{path} is not a directory"
        if not os.access(path, os.W_OK | os.X_OK):
            return f"{path} is not writable"
        return None
    base = nearest_existing(path)
    if base.is_symlink() and not base.exists():
        return f"{base} is a broken symbolic link"
    if not base.is_dir():
        return f"{base} is not a directory"
    if not os.access(base, os.W_OK | os.X_OK):
        return f"cannot create folders in {base}"
    return None
