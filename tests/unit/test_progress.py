"""Progress output: a redrawn bar on a terminal (checked through a real pty), plain log lines elsewhere."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
import textwrap

from whoiscrawl.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_not_a_terminal_gets_a_few_plain_lines_with_counts_and_rates():
    out, clock = io.StringIO(), Clock()
    with Progress("seed", total=1000, unit="addresses", stream=out, log_every_s=10, clock=clock) as progress:
        for step in range(1, 101):  # 100 updates over 50 s
            clock.now = step * 0.5
            progress.update(step * 10)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()
    assert lines[0] == "seed: started (1,000 addresses)"
    assert lines[-1].startswith("seed: done: 1,000/1,000 addresses, 100%, 20.0/s")
    assert len(lines) == 2 + 5  # started, one line per 10 s (not one per update), done
    assert lines[1] == "seed: 200/1,000 addresses, 20%, 20.0/s, 0:10 elapsed, 0:40 left"


def test_a_short_step_logs_only_its_start_and_end():
    out, clock = io.StringIO(), Clock()
    with Progress("seed", stream=out, clock=clock) as progress:
        clock.now = 2.0
        progress.update(4000)
    assert out.getvalue().splitlines() == ["seed: started", "seed: done: 4,000, 2,000.0/s, 0:02 elapsed"]


def test_unknown_total_shows_count_and_rate_without_a_bar():
    out, clock = io.StringIO(), Clock()
    progress = Progress("drain", stream=out, tty=True, clock=clock)
    clock.now = 4.0
    progress.update(200, "partition 3")
    progress.close()
    text = out.getvalue()
    assert "[#" not in text and "[." not in text and "drain: 200, 50.0/s, 0:04 elapsed, partition 3" in text


SCRIPT = textwrap.dedent("""
    import time
    from whoiscrawl.progress import Progress
    with Progress("crawl", total=40, unit="addresses", stream=__import__("sys").stdout, redraw_every_s=0) as p:
        for i in range(1, 41):
            p.update(i)
            time.sleep(0.005)
""")


def run_script(on_terminal: bool) -> str:
    if not on_terminal:
        return subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True,
                              timeout=60).stdout
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=60) == 0
    return b"".join(chunks).decode()


def test_a_terminal_gets_a_bar_redrawn_in_place_and_a_pipe_gets_lines():
    terminal = run_script(on_terminal=True)
    assert terminal.count("\r") >= 10  # redrawn in place, not one line per update
    assert "crawl: [" + "#" * 28 + "] 40/40 addresses, 100%" in terminal
    assert terminal.rstrip().endswith("done")
    piped = run_script(on_terminal=False)
    assert "\r" not in piped and "[#" not in piped
    assert piped.splitlines()[0] == "crawl: started (40 addresses)"
    assert piped.splitlines()[-1].startswith("crawl: done: 40/40 addresses, 100%")
