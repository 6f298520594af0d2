"""A log-writing process for rotation tests: `seq N` lines at a steady rate, O_APPEND.

Usage: python log_writer.py PATH COUNT LINES_PER_S [--reopen]
With --reopen it behaves like a daemon told to reopen its log (or Python's
WatchedFileHandler): when PATH names a different file than the one it holds, it switches.
"""

from __future__ import annotations

import os
import sys
import time

BATCH = 10  # lines per write


def main() -> None:
    path, count, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    reopen = "--reopen" in sys.argv
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    started = time.monotonic()
    for first in range(0, count, BATCH):
        if reopen:
            try:
                if os.stat(path).st_ino != os.fstat(fd).st_ino:
                    os.close(fd)
                    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            except FileNotFoundError:
                pass  # between rename and create: keep writing to the old file
        lines = "".join(f"seq {i}\n" for i in range(first, min(first + BATCH, count)))
        os.write(fd, lines.encode())
        delay = started + (first + BATCH) / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # pacing the writer, not synchronising a test
    os.close(fd)


if __name__ == "__main__":
    main()
