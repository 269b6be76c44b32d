"""The runner's restart policy and the way it tells deaths and restarts."""

from __future__ import annotations

import json

import pytest

from scrm_stack.supervise import (
    ENV_BACKOFF,
    ENV_BACKOFF_MAX,
    ENV_MAX_RESTARTS,
    ENV_WINDOW,
    ProcessState,
    RestartPolicy,
    exit_text,
    gave_up_line,
    log_tail,
    readable_line,
)

POLICY = RestartPolicy(base_seconds=0.5, max_seconds=8.0, max_restarts=5, window_seconds=120.0)
NOW = 10_000.0


@pytest.mark.parametrize(("restarts_ago", "expected"), [
    ((), 0.5),                           # first death: the base delay
    ((10,), 1.0),                        # doubles per restart within the window
    ((30, 20, 10), 4.0),
    ((40, 30, 20, 10), 8.0),             # capped at max_seconds
    ((50, 40, 30, 20, 10), None),        # five restarts within 120 s: give up
    ((500, 400, 300, 200, 10), 1.0),     # restarts older than the window do not count
    ((119.9,), 1.0),                     # just inside the window
    ((120.0,), 0.5),                     # just outside it
])
def test_restart_delay_doubles_within_the_window_and_gives_up_after_max_restarts(
        restarts_ago: tuple[float, ...], expected: float | None) -> None:
    assert POLICY.delay([NOW - ago for ago in restarts_ago], NOW) == expected


def test_no_restart_allowed_gives_up_at_the_first_death() -> None:
    assert RestartPolicy(max_restarts=0).delay([], NOW) is None


def test_policy_from_env_reads_every_variable() -> None:
    env = {ENV_BACKOFF: "0.2", ENV_BACKOFF_MAX: "3", ENV_MAX_RESTARTS: "2", ENV_WINDOW: "30"}
    assert RestartPolicy.from_env(env) == RestartPolicy(base_seconds=0.2, max_seconds=3.0, max_restarts=2,
                                                        window_seconds=30.0)
    assert RestartPolicy.from_env({}) == RestartPolicy()


@pytest.mark.parametrize(("var", "raw"), [
    (ENV_MAX_RESTARTS, "many"), (ENV_WINDOW, "0"), (ENV_BACKOFF, "-1"), (ENV_BACKOFF_MAX, "x"),
])
def test_policy_from_env_names_the_malformed_variable(var: str, raw: str) -> None:
    with pytest.raises(ValueError, match=var):
        RestartPolicy.from_env({var: raw})


@pytest.mark.parametrize(("code", "text"), [
    (-9, "killed by SIGKILL (-9)"), (-15, "killed by SIGTERM (-15)"), (1, "exit code 1"), (0, "exit code 0"),
    (None, "still running"),
])
def test_exit_status_in_words(code: int | None, text: str) -> None:
    assert exit_text(code) == text


def test_a_json_log_line_is_told_briefly_with_the_last_line_of_its_traceback() -> None:
    line = json.dumps({"ts": "2026-12-01T02:37:15Z", "level": "error", "logger": "sender.main",
                       "msg": "dispatcher failed\n", "exc": "Traceback …\n  File x\nOSError: connection refused"})
    assert readable_line(line) == "2026-12-01T02:37:15Z error sender.main: dispatcher failed — OSError: connection refused"


def test_long_and_plain_lines_are_cut_to_the_width() -> None:
    assert readable_line("x" * 500, width=40) == "x" * 39 + "…"
    assert readable_line("plain text") == "plain text"
    assert readable_line("{not json") == "{not json"


def test_log_tail_keeps_the_last_non_empty_lines() -> None:
    assert log_tail("a\n\nb\nc\n\n", lines=2) == "b\nc"


def test_death_and_restart_are_told_with_exit_status_log_and_time() -> None:
    st = ProcessState("sender", last_exit=-9, died_at=0.0, log_tail="line one\nline two", restart_count=1,
                      pid=4242, restarted_at=1.0, state="starting")
    death = st.death_line("/x/logs/sender.log")
    assert death.startswith("sender died at ") and "killed by SIGKILL (-9)" in death
    assert "last lines of /x/logs/sender.log:\n    line one\n    line two" in death
    restart = st.restart_line(POLICY, 1)
    assert restart.startswith("sender restarted at ") and "pid 4242" in restart and "restart 1 of at most 5" in restart
    assert st.status().startswith("starting (1 restart, last killed by SIGKILL (-9) at ")


def test_status_of_a_process_never_restarted_is_its_state() -> None:
    assert ProcessState("ingest", state="ready").status() == "ready"


def test_giving_up_names_the_process_the_limit_and_the_settings() -> None:
    text = gave_up_line("trigger-engine", POLICY)
    assert "trigger-engine died 6 times within 120 s" in text
    assert ENV_MAX_RESTARTS in text and ENV_WINDOW in text
