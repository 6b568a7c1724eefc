"""Log files rotated by size and pruned by age (flexiai_django.log_files), and the demo
settings' DJANGO_LOG_FILE switch."""

import logging
import os
import runpy
import time
from pathlib import Path

from django.utils.module_loading import import_string

from flexiai_django.log_files import DAY, SizeAndAgeRotatingFileHandler

ROOT = Path(__file__).resolve().parents[2]


def write(handler, count, size=50):
    for i in range(count):
        handler.emit(logging.makeLogRecord({"msg": f"{i:04d} " + "x" * size}))


def test_the_file_rotates_at_its_size_limit(tmp_path):
    path = tmp_path / "logs" / "app.log"  # the directory is made
    handler = SizeAndAgeRotatingFileHandler(str(path), max_bytes=200, backup_count=3)
    write(handler, 20)
    handler.close()
    rotated = handler.rotated_files()
    assert [p.name for p in rotated] == ["app.log.1", "app.log.2", "app.log.3"]
    for p in [path, *rotated]:
        assert 0 < p.stat().st_size <= 200
    assert "0019" in path.read_text()  # the newest line is in the live file


def test_rotation_deletes_rotated_files_older_than_the_age_limit(tmp_path):
    now = time.time()  # the files' own mtimes are real
    path = tmp_path / "app.log"
    handler = SizeAndAgeRotatingFileHandler(str(path), max_bytes=200, max_age_days=7,
                                            clock=lambda: now)
    write(handler, 10)  # rotations: app.log.1 exists
    (tmp_path / "app.log.1").rename(tmp_path / "app.log.5")
    os.utime(tmp_path / "app.log.5", (now - 8 * DAY, now - 8 * DAY))
    (tmp_path / "notes.txt").write_text("not ours")
    write(handler, 4)
    handler.close()
    names = {p.name for p in tmp_path.iterdir()}
    assert "app.log.5" not in names and "app.log.1" in names and "notes.txt" in names


def test_django_log_file_adds_a_rotating_file_to_the_demo_logging(tmp_path, monkeypatch):
    monkeypatch.delenv("DJANGO_LOG_FILE", raising=False)
    plain = runpy.run_path(str(ROOT / "flexiai_site" / "settings.py"))["LOGGING"]
    assert "file" not in plain["handlers"]
    monkeypatch.setenv("DJANGO_LOG_FILE", str(tmp_path / "app.log"))
    monkeypatch.setenv("DJANGO_LOG_MAX_BYTES", "300")
    logging_conf = runpy.run_path(str(ROOT / "flexiai_site" / "settings.py"))["LOGGING"]
    assert logging_conf["root"]["handlers"] == ["file"]
    assert "file" in logging_conf["loggers"]["flexiai_django.requests"]["handlers"]
    conf = dict(logging_conf["handlers"]["file"])
    handler = import_string(conf.pop("()"))(
        **{k: v for k, v in conf.items() if k != "formatter"})
    assert (handler.maxBytes, handler.max_age) == (300, 7 * DAY)
    write(handler, 10)
    handler.close()
    assert handler.rotated_files()
