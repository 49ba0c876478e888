"""Progress lines reach the terminal as well as the job log (lmbrain.scripting.start)."""

from __future__ import annotations

import io
import logging
import sys
from types import SimpleNamespace

import pytest

from lmbrain.scripting import progress_logger, start


@pytest.fixture
def restore_logging(monkeypatch):
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(sys, "stderr", sys.stderr)  # start() replaces it: put it back
    opened = []
    yield opened
    for stream in opened:
        stream.close()
    root.handlers[:] = handlers
    root.setLevel(level)
    for handler in list(progress_logger().handlers):
        progress_logger().removeHandler(handler)


def test_progress_goes_to_terminal_and_log(tmp_path, monkeypatch, restore_logging):
    terminal = io.StringIO()
    monkeypatch.setattr(sys, "stderr", terminal)
    log_file = tmp_path / "logs" / "job.log"
    job = SimpleNamespace(
        log=[str(log_file)], threads=1, rule="extract_features", wildcards={"feature": "f1"}
    )
    log = start(job)
    restore_logging.append(sys.stderr)
    progress_logger().info("story %d/%d: %.0f words/s", 1, 12, 523.4)
    log.info("model facts: only in the log")
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    shown = terminal.getvalue()
    assert "[extract_features feature=f1] story 1/12: 523 words/s" in shown
    assert "only in the log" not in shown
    written = log_file.read_text()
    assert "story 1/12: 523 words/s" in written and "only in the log" in written


def test_second_start_does_not_repeat_lines(tmp_path, monkeypatch, restore_logging):
    terminal = io.StringIO()
    monkeypatch.setattr(sys, "stderr", terminal)
    for name in ("a", "b"):
        job = SimpleNamespace(log=[str(tmp_path / f"{name}.log")], threads=1, rule="fit")
        start(job)
        restore_logging.append(sys.stderr)
        sys.stderr = terminal  # as a fresh job process would find it
    progress_logger().info("fraction 1/1")
    assert terminal.getvalue().count("fraction 1/1") == 1
