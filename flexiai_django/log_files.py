"""A log file rotated by size and pruned by age: the seed's "10 MB / 7 days".

:class:`logging.handlers.RotatingFileHandler` limits size (``maxBytes``) and the number
of old files (``backupCount``), but not their age; :class:`TimedRotatingFileHandler`
limits age but lets one busy day grow without bound. This one rotates on size and, at
each rotation, deletes the rotated files older than ``max_age_days``. The demo settings
turn it on with ``DJANGO_LOG_FILE`` (README: Logging to files).

Rotation is per process: several processes writing one file each rotate it on their own
and may lose lines around a rotation. With several workers, give each its own file or
leave files to the platform (the console goes to journald / the container log).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from logging.handlers import RotatingFileHandler
from pathlib import Path

DAY = 86_400.0


class SizeAndAgeRotatingFileHandler(RotatingFileHandler):
    """``RotatingFileHandler`` that also deletes rotated files older than ``max_age_days``."""

    def __init__(self, filename: str, max_bytes: int = 10 * 1024 * 1024,
                 max_age_days: float = 7.0, backup_count: int = 100,
                 encoding: str | None = "utf-8",
                 clock: Callable[[], float] = time.time) -> None:
        Path(filename).parent.mkdir(parents=True, exist_ok=True)
        super().__init__(filename, maxBytes=max_bytes, backupCount=backup_count,
                         encoding=encoding, delay=True)
        self.max_age = max_age_days * DAY
        self.clock = clock

    def rotated_files(self) -> list[Path]:
        base = Path(self.baseFilename)
        return sorted(p for p in base.parent.glob(base.name + ".*")
                      if p.name[len(base.name) + 1:].isdigit())

    def prune(self) -> list[Path]:
        """Delete rotated files last written more than ``max_age_days`` ago; those deleted."""
        cutoff = self.clock() - self.max_age
        old = [p for p in self.rotated_files() if p.stat().st_mtime < cutoff]
        for path in old:
            path.unlink(missing_ok=True)
        return old

    def doRollover(self) -> None:
        super().doRollover()
        self.prune()
