"""A bench's scratch folder: gone when the bench ends well, kept for its logs when it fails.

The benches kept every folder they made (broker data, state files, logs), and the test suite runs
several of them: 2.9 GB of them had piled up in /tmp on 5 December 2026, and broker folders left
the same way had filled the disk the night before.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A new folder under the system's temporary folder, removed when the block ends without an
    exception; on one, kept, and its path said on stderr."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    except BaseException:
        print(f"kept {path} for its logs", file=sys.stderr, flush=True)
        raise
    shutil.rmtree(path, ignore_errors=True)
