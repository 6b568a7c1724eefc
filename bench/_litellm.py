"""LiteLLM's proxy on the same upstream and workers, for a side-by-side row in ``gateway.py``.

It measures what a user gets from ``litellm --config ... --num_workers N`` with a master
key: one model routed to our raw upstream, requests authenticated with the master key.
LiteLLM is installed, pinned, into a throwaway venv outside the repo (reused while its
version matches), never into the project's own environment.

Kept fair, and rather in LiteLLM's favour:

- same upstream process and URL shape, same worker count, same wrk load and body;
- no database (``DATABASE_URL`` removed from its environment): no key lookups and no spend
  log writes, LiteLLM's cheapest mode (with a database it batches spend writes anyway);
  with neither a database nor an endpoint its telemetry has nowhere to go and its
  middleware passes requests straight through;
- no callbacks, caching, alerting or budgets configured: only LiteLLM's own defaults run;
- ``LITELLM_LOG=ERROR``: uvicorn's level follows it, so no access line per request (our
  servers run with ``--log-level warning``); ``LITELLM_MODE=PRODUCTION``: no ``.env``
  files read;
- ``LITELLM_LOCAL_MODEL_COST_MAP=True``: the cost map is read from the package at start
  instead of fetched from the network (start-up only, nothing per request);
- three packages beside ``litellm[proxy]``: httptools, so both sides parse HTTP with it
  on uvloop (the extra alone leaves uvicorn on pure-Python h11), and opentelemetry-sdk
  and prisma (LiteLLM's own pins in its ``proxy-runtime`` / ``extra_proxy`` extras):
  without them every request retries two failing imports (~4% of a worker's time).

Before anything runs in the venv, its site-packages is checked for start-up hooks
(``*.pth``, ``sitecustomize``): compromised LiteLLM releases (1.82.7/1.82.8) shipped one.
``python bench/_litellm.py --smoke`` starts the raw upstream and the proxy with 2 workers,
sends one request and runs wrk at 1 and 32 connections.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flexiai_django.testing.redis_server import free_port  # noqa: E402
from flexiai_django.testing.servers import (  # noqa: E402
    stop_process_group,
    wait_until_answering,
)

#: Newest release whose ``[proxy]`` extra installs from the index here (1.108.8 and later
#: pin litellm-enterprise/litellm-proxy-extras/litellm-proxy builds that are not on it).
VERSION = "1.108.7"
#: The alias ``gateway.py``'s BODY asks for, so one request body serves both.
MODEL = "auto"
#: See the module docstring: each one only takes a cost off LiteLLM.
EXTRAS = ["httptools", "opentelemetry-sdk==1.45.1", "prisma>=0.11.0,<1.0"]
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "flexiai-bench"
ALLOWED_PTH = {"distutils-precedence.pth"}  # setuptools' own


def _check_startup_hooks(venv: Path) -> None:
    site = next(venv.glob("lib/python*/site-packages"))
    hooks = [p.name for p in site.iterdir() if (p.suffix == ".pth" and p.name not in
             ALLOWED_PTH) or p.stem in ("sitecustomize", "usercustomize")]
    if hooks:
        raise RuntimeError(f"{venv} has start-up hooks {hooks}; not running it (delete it)")


def install(version: str = VERSION, log: Path | None = None) -> tuple[Path, float]:
    """The venv with ``litellm[proxy]==version`` (made if missing) and the seconds spent."""
    venv = CACHE / f"litellm-{version}"
    spec = [f"litellm[proxy]=={version}", *EXTRAS]
    marker = venv / "flexiai-spec.json"
    if marker.exists() and json.loads(marker.read_text()) == spec:
        _check_startup_hooks(venv)
        return venv, 0.0
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    with (log or Path(os.devnull)).open("ab") as out:
        subprocess.run([str(venv / "bin/python"), "-m", "pip", "install", "-q", *spec],
                       check=True, stdout=out, stderr=subprocess.STDOUT)
    _check_startup_hooks(venv)  # before the venv's python starts again
    marker.write_text(json.dumps(spec))
    return venv, time.monotonic() - started


class LiteLLMProxy:
    """``litellm`` on a loopback port in its own process group, answering chat calls."""

    def __init__(self, upstream_base_url: str, workers: int, log_dir: Path,
                 version: str = VERSION, timeout: float = 300.0) -> None:
        self.version = version
        self.model = MODEL
        self.api_key = "sk-bench-" + secrets.token_hex(16)
        venv, self.install_seconds = install(version, log_dir / "litellm-install.log")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = log_dir / f"litellm-{self.port}.yaml"
        config.write_text(json.dumps({  # JSON is YAML
            "model_list": [{"model_name": MODEL, "litellm_params": {
                "model": "openai/bench-model", "api_base": upstream_base_url,
                "api_key": "sk-dummy-upstream"}}],
            "general_settings": {"master_key": self.api_key}}, indent=1))
        self.command = [str(venv / "bin/litellm"), "--config", str(config), "--host",
                        "127.0.0.1", "--port", str(self.port), "--num_workers", str(workers)]
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        env.update(LITELLM_LOG="ERROR", LITELLM_MODE="PRODUCTION",
                   LITELLM_LOCAL_MODEL_COST_MAP="True")
        self.env = {k: env[k] for k in ("LITELLM_LOG", "LITELLM_MODE",
                                        "LITELLM_LOCAL_MODEL_COST_MAP")}
        self.log_path = log_dir / f"litellm-{self.port}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(self.command, env=env, cwd=log_dir, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        self.started_seconds = self._wait(timeout)

    def _wait(self, timeout: float) -> float:
        """Seconds until a real chat completion comes back 200 (first start is slow)."""
        body = {"model": self.model, "messages": [{"role": "user", "content": "ping"}]}
        try:
            return wait_until_answering(
                self.process,
                lambda: httpx.post(self.url + "/v1/chat/completions", json=body, timeout=5,
                                   headers={"Authorization": f"Bearer {self.api_key}"}),
                name="litellm", timeout=timeout, interval=0.5,
                details=lambda: f", see {self.log_path}")
        except RuntimeError:
            self.stop()
            raise

    def stop(self) -> None:
        stop_process_group(self.process, timeout=15)
        with contextlib.suppress(ProcessLookupError):  # multiprocessing's resource tracker
            os.killpg(self.process.pid, 9)
        self._log.close()

    def __enter__(self) -> LiteLLMProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def smoke(workers: int, seconds: int) -> None:
    import gateway  # wrk() and LUA: the very load gateway.py puts on every target

    tmp = Path(tempfile.mkdtemp(prefix="flexiai-litellm-"))
    port = free_port()
    upstream = subprocess.Popen([sys.executable, str(ROOT / "bench/_raw_upstream.py"),
                                 "--port", str(port)], stdout=subprocess.DEVNULL)
    try:
        with LiteLLMProxy(f"http://127.0.0.1:{port}/demo-primary/v1", workers, tmp) as proxy:
            print(f"litellm {proxy.version}: installed in {proxy.install_seconds:.0f} s "
                  f"(0 = reused), first 200 after {proxy.started_seconds:.1f} s; logs in {tmp}")
            print("command:", " ".join(f"{k}={v}" for k, v in proxy.env.items()),
                  " ".join(proxy.command).replace(str(Path.home()), "~"))
            body = {**gateway.BODY, "model": proxy.model}
            reply = httpx.post(proxy.url + "/v1/chat/completions", json=body, timeout=10,
                               headers={"Authorization": f"Bearer {proxy.api_key}"})
            print("reply:", reply.status_code, reply.text[:300])
            script = tmp / "post.lua"
            script.write_text(gateway.LUA % (json.dumps(body), proxy.api_key))
            print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} before wrk")
            for connections in (1, 32):
                r = gateway.wrk(proxy.url + "/v1/chat/completions", connections, seconds, script)
                print(f"litellm c={connections:<3} p50 {r['p50']:.2f} ms  p99 {r['p99']:.2f} ms"
                      f"  {r['rps']:.0f} req/s  non-2xx {r['errors']:.0f}", flush=True)
            print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} after wrk")
    finally:
        upstream.terminate()
        upstream.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="one request and two wrk rows")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    if args.smoke:
        smoke(args.workers, args.seconds)
    else:
        parser.print_help()
