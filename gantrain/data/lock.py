"""One process at a time for work that several may start at once (data-parallel ranks, two jobs of a sweep).

filelock (a dependency of torch, and what torch's own hub downloads use) holds the lock; the others
wait and then find the work done. Waiting is logged, since a silent wait looks like a hang.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

log = logging.getLogger("gantrain")


@contextmanager
def one_at_a_time(path: Path, waiting: str) -> Iterator[None]:
    """Hold ``path``'s lock for the block; ``waiting`` is logged when another process holds it first."""
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info(waiting)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
