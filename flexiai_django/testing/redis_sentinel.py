"""A throwaway Sentinel deployment on loopback: a master, a replica and three sentinels.

For tests that kill the master and watch a failover. Every process has its own free
port and directory, keeps nothing on disk and is stopped by :meth:`SentinelCluster.close`;
a shared Redis is never touched. Timings are short (the master is judged down after
``down_after_ms``) so a failover takes a second or two instead of the default 30 s.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from .redis_server import RedisServer, free_port, ping

MASTER_NAME = "mymaster"


def sentinel_binary() -> str | None:
    """``redis-sentinel`` (Debian package redis-sentinel), or None when not installed."""
    return shutil.which("redis-sentinel")


class SentinelCluster:
    """Start with :meth:`start`; :meth:`kill_master` then :meth:`wait_for_failover`."""

    def __init__(self, master_name: str = MASTER_NAME, down_after_ms: int = 500,
                 failover_timeout_ms: int = 3000) -> None:
        binary = sentinel_binary()
        if binary is None:
            raise RuntimeError("redis-sentinel is not installed "
                               "(apt-get install -y redis-sentinel)")
        self.binary = binary
        self.master_name = master_name
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        # No 5 s wait before the replica's first full sync (diskless sync's default delay).
        self.master = RedisServer(extra_args=("--repl-diskless-sync-delay", "0"))
        self.replica = RedisServer(
            extra_args=("--replicaof", "127.0.0.1", str(self.master.port)))
        self.sentinel_ports = [free_port() for _ in range(3)]
        # Fixed ids, so each config can name the others and the replica at once instead
        # of waiting for their hello messages (every 2 s).
        self.sentinel_ids = [secrets.token_hex(20) for _ in self.sentinel_ports]
        self.dir = Path(tempfile.mkdtemp(prefix="flexiai-sentinel-"))
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def sentinels(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", port) for port in self.sentinel_ports]

    @property
    def sentinels_env(self) -> str:
        """The ``REDIS_SENTINELS`` value the demo settings read: ``host:port,…``."""
        return ",".join(f"{host}:{port}" for host, port in self.sentinels)

    def _config(self, port: int, myid: str) -> Path:
        # Sentinels rewrite their config file (known peers, epochs): one writable file each.
        path = self.dir / f"sentinel-{port}.conf"
        peers = "".join(
            f"sentinel known-sentinel {self.master_name} 127.0.0.1 {other} {other_id}\n"
            for other, other_id in zip(self.sentinel_ports, self.sentinel_ids, strict=True)
            if other != port)
        path.write_text(
            f"port {port}\nbind 127.0.0.1\ndaemonize no\ndir {self.dir}\n"
            f"sentinel monitor {self.master_name} 127.0.0.1 {self.master.port} 2\n"
            f"sentinel down-after-milliseconds {self.master_name} {self.down_after_ms}\n"
            f"sentinel failover-timeout {self.master_name} {self.failover_timeout_ms}\n"
            f"sentinel parallel-syncs {self.master_name} 1\n"
            f"sentinel myid {myid}\n{peers}"
            f"sentinel known-replica {self.master_name} 127.0.0.1 {self.replica.port}\n")
        return path

    def start(self, timeout: float = 20.0) -> SentinelCluster:
        self.master.start()
        self.replica.start()
        for port, myid in zip(self.sentinel_ports, self.sentinel_ids, strict=True):
            self.processes.append(subprocess.Popen(
                [self.binary, str(self._config(port, myid))],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + timeout
        while not self._ready():
            if time.monotonic() > deadline:
                raise RuntimeError("the sentinels did not see the replica and each other")
            time.sleep(0.05)
        return self

    def _ready(self) -> bool:
        """Replica in sync and every sentinel knows the replica and both other sentinels
        (without that no quorum forms and the master is never replaced)."""
        if not all(ping(f"redis://{h}:{p}") for h, p in self.sentinels):
            return False
        info = self.client(self.replica.port).info("replication")
        if info.get("master_link_status") != "up":
            return False
        for _, port in self.sentinels:
            sentinel = self.client(port)
            peers: Any = sentinel.sentinel_sentinels(self.master_name)
            if len(peers) < 2 or not sentinel.sentinel_slaves(self.master_name):
                return False
        return True

    @staticmethod
    def client(port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=1,
                           socket_connect_timeout=1, decode_responses=True)

    def named_master(self, port: int) -> tuple[str, int]:
        """The master the sentinel on ``port`` names."""
        answer: Any = self.client(port).sentinel_get_master_addr_by_name(self.master_name)
        return str(answer[0]), int(answer[1])

    def master_address(self) -> tuple[str, int]:
        """The master as the first answering sentinel reports it."""
        for _, port in self.sentinels:
            try:
                return self.named_master(port)
            except redis.RedisError:
                continue
        raise RuntimeError("no sentinel answered")

    def wait_for_replica_sync(self, timeout: float = 5.0) -> float:
        """Until the replica has applied every write the master has taken so far;
        returns the seconds waited (replication is asynchronous)."""
        started = time.monotonic()
        target = self.client(self.master.port).info("replication")["master_repl_offset"]
        while True:
            offset = self.client(self.replica.port).info("replication").get(
                "slave_repl_offset", 0)
            if offset >= target:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"replica at offset {offset}, master at {target}")
            time.sleep(0.01)

    def kill_master(self) -> None:
        """SIGKILL the master: the host died, nothing is flushed or handed over."""
        self.master.kill()

    def wait_for_failover(self, timeout: float = 15.0) -> float:
        """Until every sentinel names the replica as master and it accepts writes;
        returns the seconds taken."""
        started = time.monotonic()
        wanted = ("127.0.0.1", self.replica.port)
        while True:
            try:
                named = {self.named_master(port) for _, port in self.sentinels}
                role = self.client(self.replica.port).info("replication")["role"]
            except redis.RedisError:
                named, role = set(), ""
            if named == {wanted} and role == "master":
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"no failover within {timeout}s: sentinels say {named}")
            time.sleep(0.05)

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=10)
        self.replica.close()
        self.master.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> SentinelCluster:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()
