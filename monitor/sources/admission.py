"""Which files a log source may open: no kernel pseudo-file (/proc, /sys), no glob match that
leads out of the glob's directory, regular files only, within the top of the descriptor table
kept for them and MAX_FILES_PER_SOURCE; and a warning when running as root."""

from __future__ import annotations

import errno
import fcntl
import functools
import logging
import os
import resource
import stat

from monitor.values import kind_of

log = logging.getLogger(__name__)

# Kernel pseudo-files: never logs, some secret (/proc/self/environ), some read destructively
# (/proc/kmsg). Refused however they are named.
PSEUDO_FS_ROOTS = ("/proc", "/sys")
# Followed files may use the top half of the descriptor table, at most MAX_FILE_FDS of it; the
# rest is kept for the listening socket, clients, inotify and the journal's pipes (#13.16:
# 3,000 files under a 1,024 limit left the server unable to listen). The cap lets ten
# thousand clients in under a limit of 20,000 (#17): half of it would have been 10,000 files.
FILES_FD_SHARE = 0.5
MAX_FILE_FDS = 4096
# A glob naming more files is followed for its newest this many: each costs a descriptor,
# and a full pass (the safety poll) reads each; 256 is more logs than a person watches on
# one page, and four such sources still fit under the common 1,024 limit (#13.16).
MAX_FILES_PER_SOURCE = 256
_has_warned_root = False  # one warning per process, however many sources


def warn_if_root() -> None:
    """Log once that running as root lets every viewer read what root can."""
    global _has_warned_root
    if os.geteuid() == 0 and not _has_warned_root:
        _has_warned_root = True
        log.warning(
            "running as root: viewers can read any file a --log path or glob names; "
            "run as a user in the adm group instead"
        )


class NotRegularFile(OSError):
    """The path is a directory, FIFO, socket or device: nothing a log tailer may read."""


@functools.cache
def pseudo_fs_devices() -> frozenset[int]:
    """The st_dev of procfs and sysfs where they are mounted (not the root's, if they are not)."""
    devices = set()
    for root in PSEUDO_FS_ROOTS:
        try:
            devices.add(os.stat(root).st_dev)
        except OSError:
            continue
    try:
        devices.discard(os.stat("/").st_dev)
    except OSError:
        pass
    return frozenset(devices)


def resolved(path: str, fixed: str, real_fixed: str) -> str:
    """`path` (a match of a glob whose fixed directory is `fixed`) with symlinks resolved:
    one lstat per component below `fixed` unless one is a link (a full pass stats them all)."""
    rel = path[len(fixed) :].lstrip("/")
    parts = rel.split("/")
    if not path.startswith(fixed) or "." in parts or ".." in parts:
        return os.path.realpath(path)
    at = fixed
    for part in parts:
        at = os.path.join(at, part)
        if os.path.islink(at):
            return os.path.realpath(path)
    return os.path.join(real_fixed, rel)


def refusal(path: str, st_dev: int, glob_root: tuple[str, str] | None) -> str | None:
    """Why `path` must not be followed, or None: it resolves into /proc or /sys, or (a glob's
    match: `glob_root` is its fixed directory and that resolved) it is a symlink out of it."""
    real = resolved(path, *glob_root) if glob_root else os.path.realpath(path)
    is_under_root = any(real == root or real.startswith(root + "/") for root in PSEUDO_FS_ROOTS)
    if is_under_root or st_dev in pseudo_fs_devices():
        return f"{path} resolves to {real}, a kernel pseudo-file (procfs, sysfs); not followed"
    if glob_root:
        fixed, real_fixed = glob_root
        if os.path.commonpath([real, real_fixed]) != real_fixed:
            return f"{path} is a symlink out of {fixed or '.'}; not followed"
    return None


def files_fd_cap(soft: int) -> int:
    """How many descriptors, at the top of a table of `soft`, are kept for followed files."""
    return min(int(soft * FILES_FD_SHARE), MAX_FILE_FDS)


def into_files_range(fd: int) -> int:
    """`fd` moved into the top of the descriptor table (files_fd_cap of it), which is kept
    for followed files: the kernel gives everything else (clients above all) the lowest free
    descriptor, so neither crowds out the other. EMFILE (closing `fd`) once that range is
    full."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return fd
    cap = files_fd_cap(soft)
    if fd >= soft - cap:
        return fd
    try:
        return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, soft - cap)
    except OSError:
        raise OSError(
            errno.EMFILE, f"the {cap} of {soft} file descriptors kept for followed files are in use"
        ) from None
    finally:
        os.close(fd)


def open_regular(path: str) -> tuple[int, os.stat_result]:
    """Open a regular file for reading without blocking (a FIFO would block on open)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    fd = into_files_range(fd)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise NotRegularFile(f"{path} is {kind_of(st.st_mode)}")
    return fd, st
