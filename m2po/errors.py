"""Errors a user can fix, printed as one line: ``m2po <cmd>: error: <what>, <where>, <fix>``.

A subcommand raises :class:`UserError` for bad input it detects itself; :func:`m2po.cli.main`
turns it (and a :class:`~m2po.config.ConfigError`, and an ``OSError`` such as a full disk or a
read-only folder) into that line and exit status 2, so no user mistake ends in a traceback.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

__all__ = ["DISK_FULL", "NOT_WRITABLE", "UserError", "check_writable", "from_os_error", "os_error_with_path"]

#: errno values meaning "the output did not fit"
DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
#: errno values meaning "this folder may not be written"
NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM}


class UserError(Exception):
    """Bad input, named: ``what`` went wrong, ``where`` (a path, a key, a line), and the ``fix``."""

    def __init__(self, what: str, where: str | os.PathLike[str] = "", fix: str = "") -> None:
        self.what, self.where, self.fix = what, str(where), fix
        super().__init__(", ".join(p for p in (what, self.where, fix) if p))

    def __reduce__(self) -> tuple:  # picklable across worker processes, subclasses included
        return type(self), (self.what, self.where, self.fix)

    def line(self, command: str) -> str:
        return f"m2po {command}: error: {self}"


def os_error_with_path(e: OSError, path: str | os.PathLike[str]) -> OSError:
    """``e`` itself when it names a file, else the same error naming ``path`` (a failed ``write``
    on an open file does not say which file it was)."""
    if e.filename is not None or e.errno is None:
        return e
    return type(e)(e.errno, e.strerror, str(path))


def from_os_error(e: OSError, fix: str = "") -> UserError:
    """The one-line form of an ``OSError``; ``fix`` replaces the generic advice."""
    where = e.filename if e.filename is not None else ""
    if e.errno in DISK_FULL:
        what = "file size limit reached" if e.errno == errno.EFBIG else "no space left on device"
        return UserError(what, where, fix or "free some space (or write elsewhere) and run the command again")
    if e.errno in NOT_WRITABLE:
        what = "read-only file system" if e.errno == errno.EROFS else "permission denied"
        folder = Path(where).parent if where and not Path(where).is_dir() else where
        return UserError(
            f"cannot write ({what})",
            where,
            fix or f"make {folder or 'the folder'} writable or choose another output folder",
        )
    if e.errno == errno.ENOENT:
        return UserError("no such file or folder", where, fix or "check the path")
    what = e.strerror or (str(e).splitlines()[0] if str(e) else type(e).__name__)
    return UserError(what, where, fix)


def check_writable(folder: str | os.PathLike[str], fix: str = "") -> None:
    """A :class:`UserError` now, before any work, when ``folder`` (or, if it does not exist yet, the
    nearest folder above it) cannot be written: a read-only file system or no permission. Creates nothing."""
    p = Path(folder).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    if not p.is_dir():
        raise UserError("not a folder", p, fix or "choose a folder")
    if p.is_dir() and os.access(p, os.W_OK | os.X_OK):
        return
    code = errno.EROFS if os.statvfs(p).f_flag & os.ST_RDONLY else errno.EACCES
    raise from_os_error(OSError(code, os.strerror(code), str(folder)), fix)
