"""Calls from many Python threads run at once, each getting its own answer."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import agenthub


def test_eight_threads_of_two_hundred_calls_get_their_own_answers(home: Path, faults: Path) -> None:
    agent = agenthub.load_agent(str(faults), home=home, settings={"runtime.workers_per_agent": 4})
    failures: list[str] = []

    def caller(thread: int) -> None:
        for i in range(200):
            value = thread * 1000 + i
            response = agent.echo(value, label=f"t{thread}")
            if response.get("result") != {"value": value, "label": f"t{thread}"}:
                failures.append(f"thread {thread} call {i}: {response}")

    threads = [threading.Thread(target=caller, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads)
    assert failures == []


def test_calls_release_the_gil(home: Path, faults: Path) -> None:
    """While one thread waits for a slow call, another thread runs Python."""
    agent = agenthub.load_agent(str(faults), home=home)
    agent.echo(0)
    ticks = 0
    done = threading.Event()

    def spin() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            time.sleep(0.001)

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        assert agent.nap(1.0)["result"] == "rested"
    finally:
        done.set()
        spinner.join()
    assert ticks > 200, f"the other thread ran only {ticks} times in one second"
