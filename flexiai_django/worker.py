"""Which process answered: ``host:pid``, stable for the life of a worker."""

import os
import socket
from functools import cache


@cache
def _host() -> str:
    return socket.gethostname()


def worker_id() -> str:
    return f"{_host()}:{os.getpid()}"
