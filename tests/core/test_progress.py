"""probe.progress: step lines and bars on a terminal (a real pty, or forced), nothing on a pipe or a log."""

import argparse
import os
import subprocess
import sys
import textwrap

import pytest

import probe.cli
from probe import progress
from probe.cli import Command


def _job(args: argparse.Namespace) -> dict:
    """A command with two steps and a bar, as the domain commands have."""
    with progress.steps("toy", 2) as step:
        step("first thing")
        total = sum(progress.bar(range(5), desc="[probe toy] items", unit="item"))
        step("second thing")
    return {"total": total}


@pytest.fixture
def toy_commands(monkeypatch):
    toy = Command(name="toy", help="a toy", add_arguments=lambda p: None, run=_job)
    monkeypatch.setattr(probe.cli, "discover", lambda: {"toy": toy})


def test_enabled_follows_the_terminal_unless_told(monkeypatch):
    monkeypatch.delenv("PROBE_PROGRESS", raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert progress.enabled() is False
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert progress.enabled() is True
    monkeypatch.setenv("PROBE_PROGRESS", "0")
    assert progress.enabled() is False and progress.enabled(True) is True
    monkeypatch.setenv("PROBE_PROGRESS", "yes")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert progress.enabled() is True and progress.enabled(False) is False


def test_off_a_terminal_only_the_final_lines(tmp_path, toy_commands, capsys, monkeypatch):
    monkeypatch.delenv("PROBE_PROGRESS", raising=False)
    assert probe.cli.main(["toy", "--out", str(tmp_path / "one")]) == 0
    one = tmp_path / "one"
    assert capsys.readouterr().err == f"[probe toy] wrote {one}/summary.json; report: {one}/report.html\n"
    assert probe.cli.main(["demo", "--out", str(tmp_path / "all")]) == 0
    every = tmp_path / "all"
    assert capsys.readouterr().err == f"[probe demo] wrote {every}/summary.json; report: {every}/report.html\n"


def test_forced_on_shows_command_step_and_rate(tmp_path, toy_commands, capsys, monkeypatch):
    monkeypatch.setenv("PROBE_PROGRESS", "1")
    assert probe.cli.main(["demo", "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    for line in ("[probe demo] command 1/1: toy", "[probe toy] step 1/2: first thing",
                 "[probe toy] step 2/2: second thing (step 1 took", "[probe toy] 2 steps in"):
        assert line in err
    assert "[probe toy] items" in err and "item/s" in err  # the bar, with its rate
    assert "command/s" in err or "s/command" in err
    assert err.rstrip().endswith(f"[probe demo] wrote {tmp_path}/summary.json; report: {tmp_path}/report.html")


def test_more_steps_than_announced_raise_the_count(capsys):
    with progress.steps("x", 1, enable=True) as step:
        step("a")
        step("b")
    err = capsys.readouterr().err
    assert "[probe x] step 1/1: a" in err and "[probe x] step 2/2: b" in err
    with progress.steps("x", 3, enable=False) as step:
        step("a")
    assert capsys.readouterr().err == ""
    assert list(progress.bar([1, 2], desc="d", enable=False)) == [1, 2]


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_a_real_terminal_shows_the_steps_and_a_pipe_does_not():
    # the module alone, loaded from its file: the check is about the terminal, not probe's start-up time
    code = textwrap.dedent(f"""
        import importlib.util
        spec = importlib.util.spec_from_file_location("progress", {progress.__file__!r})
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        bar, steps = mod.bar, mod.steps
        with steps("toy", 2) as step:
            step("first thing")
            for _ in bar(range(3), desc="[probe toy] items", unit="item"):
                pass
            step("second thing")
        print("done", flush=True)
    """)
    env = {k: v for k, v in os.environ.items() if k != "PROBE_PROGRESS"}
    primary, secondary = os.openpty()
    import fcntl
    import struct
    import termios

    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal 100 columns wide
    try:
        proc = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=secondary, env=env,
                              timeout=60, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
        os.close(secondary)
        secondary = None
        chunks = []
        while True:
            try:
                data = os.read(primary, 4096)
            except OSError:  # the terminal closed
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(primary)
        if secondary is not None:
            os.close(secondary)
    tty = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0 and proc.stdout == b"done\n"
    assert "[probe toy] step 1/2: first thing" in tty and "[probe toy] step 2/2: second thing" in tty
    assert "item/s" in tty or "s/item" in tty
    piped = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, timeout=60,
                           cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert piped.returncode == 0 and piped.stdout == b"done\n" and piped.stderr == b""
