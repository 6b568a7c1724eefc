"""What the test proxies (nginx, HAProxy) share: a child process and a scratch folder."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Self


class ProxyProcess:
    """A server started by :meth:`start` in ``self._dir``; stopped (and its folder
    removed) by :meth:`stop` or by leaving its ``with`` block."""

    process: subprocess.Popen[bytes] | None = None
    _dir: Path

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
