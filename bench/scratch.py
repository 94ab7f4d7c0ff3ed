"""A bench's scratch folder: gone when the bench ends well, kept for its logs when it fails.

The benches kept every folder they made (broker data, state files, logs), and the test suite runs
several of them: 2.9 GB of them had piled up in /tmp on 5 December 2026, and broker folders left
the same way had filled the disk the night before.

A SIGTERM to the bench unwinds it like an exception while the folder is open, so the blocks
inside (a throwaway broker, the child processes) stop what they started: until 5 December 2026 a
bench ended by SIGTERM left its broker and its workers running.
"""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType


class Terminated(SystemExit):
    """The bench was sent SIGTERM; raised in its main thread so that every ``finally`` runs."""


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated(128 + signum)


@contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A new folder under the system's temporary folder, removed when the block ends without an
    exception; on one, kept, and its path said on stderr. Within the block SIGTERM raises
    ``Terminated`` when it was opened in the main thread (``signal`` takes a handler only there)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main else None
    try:
        yield path
    except BaseException:
        print(f"kept {path} for its logs", file=sys.stderr, flush=True)
        raise
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
    shutil.rmtree(path, ignore_errors=True)
