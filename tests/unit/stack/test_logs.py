"""Size-capped logs: copy-truncate rotation keeps N files and the writer goes on appending."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from scrm_stack.logs import ENV_KEEP, ENV_MAX_BYTES, LogRotation


def test_a_log_over_the_cap_is_copied_aside_and_truncated_while_its_writer_keeps_appending(tmp_path: Path) -> None:
    log = tmp_path / "sender.log"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)  # how the runner hands logs to children
    try:
        rotation = LogRotation(max_bytes=1024, keep=2)
        for generation in range(4):
            os.write(fd, f"gen{generation} ".encode() * 300)
            assert rotation.rotate_folder(tmp_path) == [log]
        os.write(fd, b"after\n")
    finally:
        os.close(fd)
    assert log.read_bytes() == b"after\n"  # appended at the new end: no hole of NUL bytes
    assert (tmp_path / "sender.log.1").read_bytes().startswith(b"gen3 ")
    assert (tmp_path / "sender.log.2").read_bytes().startswith(b"gen2 ")
    assert not (tmp_path / "sender.log.3").exists()


def test_a_log_under_the_cap_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "ingest.log").write_bytes(b"x" * 100)
    assert LogRotation(max_bytes=1024, keep=3).rotate_folder(tmp_path) == []
    assert (tmp_path / "ingest.log").read_bytes() == b"x" * 100


def test_rotation_settings_from_env() -> None:
    assert LogRotation.from_env({ENV_MAX_BYTES: "2048", ENV_KEEP: "5"}) == LogRotation(max_bytes=2048, keep=5)
    assert LogRotation.from_env({}) == LogRotation(max_bytes=10 * 1024 * 1024, keep=3)
    for env in ({ENV_MAX_BYTES: "10MB"}, {ENV_MAX_BYTES: "10"}, {ENV_KEEP: "0"}):
        with pytest.raises(ValueError, match=next(iter(env))):
            LogRotation.from_env(env)
