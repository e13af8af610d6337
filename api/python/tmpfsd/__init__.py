"""Point Python's tempfile module at a tmpfsd mount.

tmpfsd mounts a temporary file system that lives in RAM and spills to disk.
``install()`` finds a mount and makes ``tempfile.gettempdir()`` return it,
so every ``tempfile`` constructor creates its files there; it also sets
``TMPDIR``, ``TMP`` and ``TEMP`` for child processes.

Lookup order, the same as the Rust crate ``tmpfsd-api``: an explicit path,
the ``TMPFSD_DIR`` environment variable, a live tmpfsd mount owned by the
current user from the mount table, then the platform temporary directory.
A candidate that is missing, not writable, or a dead mount (its daemon is
gone) is skipped; a skipped ``TMPFSD_DIR`` or explicit path is reported with
one warning line.
"""

import errno
import os
import subprocess
import sys
import tempfile
import warnings
from typing import List, NamedTuple, Optional, Tuple

__all__ = ["Location", "locate", "install", "TMPFSD_DIR", "TEMP_VARS"]

TMPFSD_DIR = "TMPFSD_DIR"
TEMP_VARS = ("TMPDIR", "TMP", "TEMP")


class Location(NamedTuple):
    """Where temporary files go, how that was decided, and what was skipped."""

    path: str
    source: str  # "explicit", "env", "mount-table" or "fallback"
    skipped: List[Tuple[str, str]]


def _unescape(field: str) -> str:
    out = bytearray()
    b = field.encode()
    i = 0
    while i < len(b):
        if b[i] == 0x5C and i + 3 < len(b) and all(0x30 <= c <= 0x37 for c in b[i + 1 : i + 4]):
            out.append(int(b[i + 1 : i + 4], 8))
            i += 4
        else:
            out.append(b[i])
            i += 1
    return out.decode(errors="replace")


def _parse_mountinfo(text: str, uid: int) -> List[str]:
    found = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, rest = left.split(" "), right.split(" ")
        if len(fields) < 5 or len(rest) < 2:
            continue
        fs_type, source = rest[0], rest[1]
        opts = rest[2] if len(rest) > 2 else ""
        if not (fs_type == "fuse.tmpfsd" or (fs_type == "fuse" and source == "tmpfsd")):
            continue
        owner = [o[len("user_id=") :] for o in opts.split(",") if o.startswith("user_id=")]
        if owner and owner[0].isdigit() and int(owner[0]) == uid:
            found.append(_unescape(fields[4]))
    return found


def _own_mounts() -> List[str]:
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
                return _parse_mountinfo(f.read(), os.getuid())
        except OSError:
            return []
    if sys.platform == "darwin":
        # "tmpfsd on /Users/a/.fasttmp (macfuse, nodev, nosuid, mounted by a)"
        try:
            out = subprocess.run(["/sbin/mount"], capture_output=True, text=True, check=False).stdout
        except OSError:
            return []
        user = os.environ.get("USER", "")
        mounts = []
        for line in out.splitlines():
            if line.startswith("tmpfsd on ") and line.endswith(f"mounted by {user})"):
                mounts.append(line[len("tmpfsd on ") : line.rindex(" (")])
        return mounts
    return []


def _usable(path: str) -> Optional[str]:
    """None if ``path`` is a writable directory that answers, else why not."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "does not exist"
    except OSError as e:
        if e.errno == errno.ENOTCONN:
            return "a dead mount (its daemon is gone)"
        return f"cannot be used: {e.strerror}"
    import stat

    if not stat.S_ISDIR(st.st_mode):
        return "not a directory"
    if not os.access(path, os.W_OK | os.X_OK):
        return "not writable"
    return None


def locate(explicit: Optional[str] = None) -> Location:
    """Find where temporary files should go. Never fails."""
    skipped: List[Tuple[str, str]] = []
    candidates = []
    if explicit:
        candidates.append((os.fspath(explicit), "explicit"))
    env = os.environ.get(TMPFSD_DIR)
    if env:
        candidates.append((env, "env"))
    for candidate, source in candidates:
        why = _usable(candidate)
        if why is None:
            return Location(candidate, source, skipped)
        skipped.append((candidate, why))
    for mount in _own_mounts():
        why = _usable(mount)
        if why is None:
            return Location(mount, "mount-table", skipped)
        skipped.append((mount, why))
    # The platform's own choice, ignoring a tempdir set by an earlier install().
    saved, tempfile.tempdir = tempfile.tempdir, None
    try:
        fallback = tempfile._get_default_tempdir()  # pylint: disable=protected-access
    finally:
        tempfile.tempdir = saved
    return Location(fallback, "fallback", skipped)


def install(explicit: Optional[str] = None) -> str:
    """Point ``tempfile`` and child processes at the located directory.

    Sets ``tempfile.tempdir`` (which ``gettempdir()`` returns from then on,
    whether or not it was looked up before) and ``TMPDIR``, ``TMP`` and
    ``TEMP``. Returns the directory.
    """
    loc = locate(explicit)
    for path, why in loc.skipped:
        if path in (explicit, os.environ.get(TMPFSD_DIR)):
            warnings.warn(f"tmpfsd: {path} {why}; using {loc.path}", RuntimeWarning, stacklevel=2)
    tempfile.tempdir = loc.path
    for var in TEMP_VARS:
        os.environ[var] = loc.path
    return loc.path
