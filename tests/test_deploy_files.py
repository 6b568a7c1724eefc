"""The deployment files say what a safe deployment needs.

Docker and Kubernetes are not available to the suite: their files are read (YAML parsed),
not run. deploy/gunicorn.conf.py is imported as gunicorn does, in fresh processes.
"""

import json
import os
import re
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
GUNICORN_CONF = DEPLOY / "gunicorn.conf.py"


def instructions(dockerfile):
    """(INSTRUCTION, arguments) pairs, continuation lines joined."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [tuple(line.split(None, 1)) for line in lines if line and not line.startswith("#")]


def test_the_image_runs_as_a_numeric_non_root_user_that_cannot_write_the_code():
    steps = instructions(DEPLOY / "Dockerfile")
    users = [args for op, args in steps if op == "USER"]
    assert users, "no USER: the container would run as root"
    user = users[-1].split(":")[0]
    assert user.isdigit() and int(user) != 0  # numeric: Kubernetes can check runAsNonRoot
    run = " ".join(args for op, args in steps if op == "RUN")
    assert "useradd" in run and f"--uid {user}" in run
    # The code is copied as root and never handed to the user.
    assert not any("--chown" in args for op, args in steps if op == "COPY")
    assert not re.search(r"chown\S*\s+(-\S+\s+)*\S+\s+/app\b", run)
    assert [op for op, _ in steps].index("USER") > max(
        i for i, (op, _) in enumerate(steps) if op in ("COPY", "RUN"))
    env = " ".join(args for op, args in steps if op == "ENV")
    assert "DJANGO_DEBUG=0" in env and "BIND=0.0.0.0:8000" in env


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def test_compose_redis_requires_a_password_and_the_app_sends_it(compose):
    command = compose["services"]["redis"]["command"]
    password = command[command.index("--requirepass") + 1]
    assert password.startswith("${REDIS_PASSWORD:?")  # compose refuses to start without it
    for app in ("app1", "app2"):
        url = compose["services"][app]["environment"]["REDIS_URL"]
        assert re.fullmatch(r"redis://:\$\{REDIS_PASSWORD:\?[^}]*\}@redis:6379/\d+", url), url


def test_compose_allows_only_the_named_host(compose):
    for app in ("app1", "app2"):
        env = compose["services"][app]["environment"]
        hosts = env["DJANGO_ALLOWED_HOSTS"]
        assert "*" not in hosts.split(",")
        assert hosts.startswith("${FLEXIAI_HOST:?")
        assert env["DJANGO_SECRET_KEY"].startswith("${DJANGO_SECRET_KEY:?")
        assert "DJANGO_DEBUG" not in env or env["DJANGO_DEBUG"] == "0"
        assert env["DJANGO_HTTPS"] == "${DJANGO_HTTPS:-0}"
    # ... which works because nginx passes the client's Host on, in every proxied location.
    nginx = (DEPLOY / "nginx.conf").read_text()
    locations = re.findall(r"location[^{]*\{([^}]*)\}", nginx)
    proxied = [body for body in locations if "proxy_pass" in body]
    assert proxied and all("proxy_set_header Host $host;" in body for body in proxied)
    assert all("proxy_set_header X-Forwarded-Proto $scheme;" in body for body in proxied)


@pytest.fixture(scope="module")
def deployment():
    documents = list(yaml.safe_load_all((DEPLOY / "k8s" / "flexiai.yaml").read_text()))
    return next(d for d in documents if d["kind"] == "Deployment")


def test_k8s_pods_run_unprivileged_on_a_read_only_root(deployment):
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (app,) = pod["containers"]
    assert app["securityContext"]["readOnlyRootFilesystem"] is True
    assert app["securityContext"]["allowPrivilegeEscalation"] is False
    # What must stay writable is on emptyDir volumes: the metrics files and /tmp.
    env = {e["name"]: e for e in app["env"]}
    mounts = {m["mountPath"]: m["name"] for m in app["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    for path in (env["PROMETHEUS_MULTIPROC_DIR"]["value"], "/tmp",
                 os.path.dirname(env["FLEXIAI_DB"]["value"])):
        assert "emptyDir" in volumes[mounts[path]], path


def test_k8s_allowed_hosts_let_the_probes_in(deployment):
    """Kubelet probes send the pod IP as Host: it comes from the downward API."""
    (app,) = deployment["spec"]["template"]["spec"]["containers"]
    names = [e["name"] for e in app["env"]]
    env = {e["name"]: e for e in app["env"]}
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    hosts = env["DJANGO_ALLOWED_HOSTS"]["value"].split(",")
    assert "$(POD_IP)" in hosts and "*" not in hosts and len(hosts) >= 2
    # $(VAR) only expands variables defined earlier in the list.
    assert names.index("POD_IP") < names.index("DJANGO_ALLOWED_HOSTS")
    assert env["DJANGO_SECRET_KEY"]["valueFrom"]["secretKeyRef"]
    assert env["DJANGO_DEBUG"]["value"] == "0"
    for probe in ("livenessProbe", "readinessProbe"):
        assert app[probe]["httpGet"]["path"].startswith("/health")  # exempt from redirects


def load_gunicorn_conf(*, on_exit=False, **env):
    """Import the config file as gunicorn does, in a fresh process; what it decided."""
    script = f"""
import json, os, runpy, stat, types
conf = runpy.run_path({str(GUNICORN_CONF)!r})
path = str(conf["METRICS_DIR"])
mode = stat.S_IMODE(os.stat(path).st_mode) if os.path.exists(path) else None
conf = runpy.run_path({str(GUNICORN_CONF)!r})  # kill -HUP: read again, same master
again = str(conf["METRICS_DIR"])
if {on_exit!r}:
    conf["on_exit"](types.SimpleNamespace(reexec_pid=0, master_pid=0))
print(json.dumps({{"bind": conf["bind"], "dir": path, "again": again, "mode": mode,
                   "private": conf["PRIVATE_METRICS_DIR"], "exists": os.path.exists(path)}}))
"""
    clean = {k: v for k, v in os.environ.items()
             if k not in ("BIND", "PROMETHEUS_MULTIPROC_DIR", "FLEXIAI_PRIVATE_PROMETHEUS_DIR")}
    result = subprocess.run([sys.executable, "-c", script], env={**clean, **env},
                            capture_output=True, text=True, check=True, timeout=60)
    return json.loads(result.stdout)


def test_gunicorn_binds_to_loopback_unless_told():
    assert load_gunicorn_conf(on_exit=True)["bind"] == "127.0.0.1:8000"
    assert load_gunicorn_conf(on_exit=True, BIND="0.0.0.0:8000")["bind"] == "0.0.0.0:8000"


def test_gunicorn_makes_a_private_unpredictable_metrics_dir_per_master():
    first, second = load_gunicorn_conf(), load_gunicorn_conf()
    try:
        assert first["dir"] != second["dir"]
        for conf in (first, second):
            assert conf["private"] and conf["again"] == conf["dir"]  # stable across HUP
            assert conf["mode"] == 0o700
            assert Path(conf["dir"]).parent == Path(tempfile.gettempdir())
            assert Path(conf["dir"]).name.startswith("flexiai-prometheus-")
            assert stat.S_IMODE(Path(conf["dir"]).stat().st_mode) == 0o700
    finally:
        for conf in (first, second):
            Path(conf["dir"]).rmdir()


def test_gunicorn_removes_only_its_private_dir(tmp_path):
    private = load_gunicorn_conf(on_exit=True)
    assert private["private"] and not private["exists"]
    operators = tmp_path / "metrics"
    operators.mkdir()
    kept = load_gunicorn_conf(on_exit=True, PROMETHEUS_MULTIPROC_DIR=str(operators))
    assert kept["dir"] == str(operators) and not kept["private"] and operators.is_dir()


# -- rolling restarts: the proxies in front (tests/multiprocess/test_rolling_restart.py runs them)

def haproxy_sections():
    """{"defaults": [lines], "backend flexiai": [lines], ...} of deploy/haproxy.cfg."""
    sections, current = {}, None
    for raw in (DEPLOY / "haproxy.cfg").read_text().splitlines():
        line = raw.split("#", 1)[0].rstrip() if not raw.lstrip().startswith("http-check") \
            else raw.rstrip()
        if not line.strip():
            continue
        if not line.startswith(" "):
            current = line.strip()
            sections[current] = []
        else:
            sections[current].append(" ".join(line.split()))
    return sections


def seconds(value):
    return float(value[:-1]) * {"s": 1, "m": 60, "h": 3600}[value[-1]]


def test_haproxy_takes_a_draining_instance_out_well_inside_the_drain():
    from flexiai_django.conf import FlexiAISettings

    backend = haproxy_sections()["backend flexiai"]
    assert "option httpchk" in backend
    (send,) = [line for line in backend if line.startswith("http-check send")]
    # Readiness without the providers: a provider outage must not pull every instance.
    assert "uri /health/ready?providers=0" in send and "hdr Host" in send
    assert "http-check expect status 200" in backend
    (server_defaults,) = [line for line in backend if line.startswith("default-server")]
    words = server_defaults.split()
    assert "check" in words and words[words.index("fall") + 1] == "1"
    inter = seconds(words[words.index("inter") + 1])
    check_timeout = seconds(next(line.split()[-1] for line in haproxy_sections()["defaults"]
                                 if line.startswith("timeout check")))
    assert inter + check_timeout < FlexiAISettings().DRAIN_SECONDS
    # Streams on an instance marked down must finish: sessions are not cut.
    assert not any("shutdown-sessions" in line for line in backend)
    assert [line.split()[1] for line in backend if line.startswith("server ")] == ["app1",
                                                                                     "app2"]


def test_haproxy_retries_only_what_never_reached_the_app():
    defaults = haproxy_sections()["defaults"]
    (retry_on,) = [line for line in defaults if line.startswith("retry-on")]
    assert retry_on.split()[1:] == ["conn-failure"]
    assert any(line.startswith("option redispatch") for line in defaults)
    assert not any("http-buffer-request" in line for line in defaults)


def test_haproxy_lets_streams_run_and_hides_metrics():
    sections = haproxy_sections()
    timeouts = {line.split()[1]: seconds(line.split()[2])
                for line in sections["defaults"] if line.startswith("timeout ")}
    assert timeouts["server"] >= 300 and timeouts["client"] >= 300
    assert timeouts["tunnel"] >= 3600  # WebSockets
    assert timeouts["http-request"] <= 10  # slow headers are not a stream
    frontend = sections["frontend public"]
    assert "http-request return status 404 if { path /metrics }" in frontend
    assert any("set-header X-Forwarded-Proto https" in line for line in frontend)
    assert not any("compression" in line for section in sections.values()
                   for line in section)  # it would hold back Server-Sent Events


def test_the_shipped_haproxy_config_is_valid():
    from flexiai_django.testing.haproxy import INSTALL_HINT, SHIPPED, find_haproxy, render

    binary = find_haproxy()
    if binary is None:
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(f"haproxy is missing under CI ({INSTALL_HINT})")
        pytest.skip(f"haproxy is not installed ({INSTALL_HINT})")
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "haproxy.cfg"
        conf.write_text(render(SHIPPED.read_text(), ["http://127.0.0.1:1", "http://127.0.0.1:2"],
                               3))
        result = subprocess.run([binary, "-c", "-f", str(conf)], capture_output=True,
                                text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_nginx_fails_over_only_on_connection_failures_and_streams_unbuffered():
    nginx = (DEPLOY / "nginx.conf").read_text()
    code = "\n".join(line.split("#", 1)[0] for line in nginx.splitlines())
    (root,) = [body for path, body in re.findall(r"location (/)\s*\{([^}]*)\}", code)]
    (next_upstream,) = re.findall(r"proxy_next_upstream ([^;]+);", root)
    assert "error" in next_upstream.split()
    # Never a POST that reached the app, never an instance's own 5xx answer.
    assert "non_idempotent" not in next_upstream and "http_" not in next_upstream
    assert "proxy_buffering off;" in root
    # nginx drops an idle upstream connection before the app would close it under it.
    (upstream,) = re.findall(r"upstream flexiai \{([^}]*)\}", code)
    keepalive_timeout = seconds(re.search(r"keepalive_timeout (\S+);", upstream).group(1))
    app_keepalive = float(re.search(r"^keepalive = (\d+)", GUNICORN_CONF.read_text(),
                                    re.M).group(1))
    assert keepalive_timeout < app_keepalive


# -- Redis through Sentinel

SETTINGS_SOURCE = (DEPLOY.parent / "flexiai_site" / "settings.py").read_text()


def read_by_settings(name):
    return f'"{name}"' in SETTINGS_SOURCE


def test_compose_sentinel_overlay_points_the_app_at_three_sentinels_watching_the_master():
    overlay = yaml.safe_load((DEPLOY / "docker-compose.sentinel.yml").read_text())
    services = overlay["services"]
    sentinels = [name for name, s in services.items()
                 if "redis-sentinel" in " ".join(s.get("command", []))]
    assert len(sentinels) == 3
    script = services[sentinels[0]]["command"][-1]
    master, host, port, quorum = re.search(
        r"sentinel monitor (\S+) (\S+) (\d+) (\d+)", script).groups()
    assert host == "redis" and int(quorum) == 2  # a majority of three
    assert "sentinel auth-pass" in script
    replica = " ".join(services["redis-replica"]["command"])
    assert f"--replicaof {host} {port}" in replica
    for node in ("redis", "redis-replica"):  # either may be master after a failover
        command = services[node]["command"]
        assert command[command.index("--masterauth") + 1].startswith("${REDIS_PASSWORD:?")
    for app in ("app1", "app2"):
        env = services[app]["environment"]
        assert all(read_by_settings(name) for name in env)
        assert re.fullmatch(rf"redis://:\$\{{REDIS_PASSWORD:\?[^}}]*\}}@{master}/\d+",
                            env["REDIS_URL"])
        listed = [item.rpartition(":")[0] for item in env["REDIS_SENTINELS"].split(",")]
        assert sorted(listed) == sorted(sentinels)


def test_k8s_sentinel_patch_sets_only_settings_the_site_reads():
    (patch,) = yaml.safe_load_all((DEPLOY / "k8s" / "flexiai-sentinel.yaml").read_text())
    base = next(d for d in yaml.safe_load_all((DEPLOY / "k8s" / "flexiai.yaml").read_text())
                if d["kind"] == "Deployment")
    assert (patch["kind"], patch["metadata"]["name"]) == ("Deployment",
                                                          base["metadata"]["name"])
    (container,) = patch["spec"]["template"]["spec"]["containers"]
    assert container["name"] == base["spec"]["template"]["spec"]["containers"][0]["name"]
    names = [e["name"] for e in container["env"]]
    assert {"REDIS_SENTINELS", "REDIS_URL"} <= set(names)
    assert all(read_by_settings(name) for name in names)


def test_the_readmes_redis_acl_allows_every_command_our_scripts_run():
    """A deployment that copies the README's ACL line must not have a Lua script's command
    refused mid-request (HVALS and ZRANGEBYSCORE once were)."""
    readme = (ROOT / "README.md").read_text()
    rule = re.search(r"^user flexiai on .*$", readme, re.M)
    assert rule is not None
    allowed = {word[1:] for word in rule.group(0).split() if word.startswith("+")}
    called = set()
    for module in (ROOT / "flexiai_django").rglob("*.py"):
        called |= {c.lower() for c in re.findall(r"redis\.call\(\s*['\"](\w+)['\"]",
                                                 module.read_text())}
    assert called, "no script found: the pattern is stale"
    assert called <= allowed, sorted(called - allowed)
