"""Ctrl-C during a call, and fork()."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from conftest import held


def _wait_for(path: Path, seconds: float = 60) -> str:
    for _ in range(int(seconds / 0.05)):
        if path.exists() and path.read_text():
            return path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{path} never written")


def test_keyboard_interrupt_cancels_the_call_and_leaves_no_process(home: Path, faults: Path, tmp_path: Path) -> None:
    for mode in ("warm", "oneshot"):
        pidfile = tmp_path / f"{mode}.pid"
        code = f"""
            import agenthub, sys
            agent = agenthub.load_agent({str(faults)!r}, home={str(home)!r}, mode={mode!r}, allow_write=[{str(tmp_path)!r}])
            try:
                agent.nap(60, pidfile={str(pidfile)!r})
            except KeyboardInterrupt:
                print("interrupted", flush=True)
                print("after", agent.echo(7)["result"]["value"], flush=True)
                sys.exit(0)
            print("not interrupted")
            sys.exit(1)
        """
        child = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            _wait_for(pidfile)
            started = time.monotonic()
            child.send_signal(signal.SIGINT)
            out, err = child.communicate(timeout=30)
        finally:
            child.kill()
        assert child.returncode == 0, (mode, out, err)
        assert "interrupted" in out and "after 7" in out, (mode, out, err)
        assert time.monotonic() - started < 10
        assert not held(pidfile), f"{mode}: the interrupted call's process is still running"


def test_a_forked_child_gets_a_runtime_of_its_own(home: Path, faults: Path) -> None:
    code = f"""
        import os, sys, agenthub
        agent = agenthub.load_agent({str(faults)!r}, home={str(home)!r})
        assert agent.echo(1)["result"]["value"] == 1
        parent_workers = agent._session.native.idle_worker_pids()
        pid = os.fork()
        if pid == 0:
            try:
                ok = agent.echo(2)["result"]["value"] == 2
                ok = ok and not set(agent._session.native.idle_worker_pids()) & set(parent_workers)
                os._exit(0 if ok else 3)
            except BaseException as e:
                print("child:", repr(e), file=sys.stderr)
                os._exit(4)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        # The child's runtime was its own: the parent's worker is still there and serves it.
        assert agent._session.native.idle_worker_pids() == parent_workers
        assert agent.echo(3)["result"]["value"] == 3
        print("ok")
    """
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr


def test_a_sigint_handler_of_the_users_does_not_cancel_the_call(home: Path, faults: Path, tmp_path: Path) -> None:
    pidfile = tmp_path / "nap.pid"
    code = f"""
        import signal, agenthub
        seen = []
        signal.signal(signal.SIGINT, lambda *_: seen.append("sigint"))
        agent = agenthub.load_agent({str(faults)!r}, home={str(home)!r}, allow_write=[{str(tmp_path)!r}])
        response = agent.nap(2, pidfile={str(pidfile)!r})
        print(response.get("result"), seen)
    """
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        _wait_for(pidfile)
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 0, err
    assert out.strip() == "rested ['sigint']", (out, err)


def test_a_signal_in_a_forked_child_does_not_cancel_the_parents_call(home: Path, faults: Path, tmp_path: Path) -> None:
    code = f"""
        import os, signal, sys, time, agenthub
        agent = agenthub.load_agent({str(faults)!r}, home={str(home)!r}, allow_write=[{str(tmp_path)!r}])
        agent.echo(1)  # the parent's watch exists before the fork
        pid = os.fork()
        if pid == 0:
            with open({str(tmp_path / "forked.pid")!r}, "w") as f:
                f.write(str(os.getpid()))
            try:
                agent.nap(30, pidfile={str(tmp_path / "child.pid")!r})
                os._exit(1)
            except KeyboardInterrupt:
                os._exit(0)
        for _ in range(1200):
            if os.path.exists({str(tmp_path / "child.pid")!r}) and open({str(tmp_path / "child.pid")!r}).read():
                break
            time.sleep(0.05)
        parent = agent.nap(2)  # the child is interrupted while the parent's call runs
        _, status = os.waitpid(pid, 0)
        print(parent.get("result"), os.waitstatus_to_exitcode(status))
    """
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        _wait_for(tmp_path / "child.pid")
        time.sleep(0.5)
        os.kill(int(_wait_for(tmp_path / "forked.pid")), signal.SIGINT)
        out, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert out.strip() == "rested 0", (out, err)



def test_a_child_forked_during_a_main_thread_call_does_not_keep_the_parents_ctrl_c_pipe(home: Path, faults: Path) -> None:
    code = f"""
        import os, signal, threading, time, agenthub
        agent = agenthub.load_agent({str(faults)!r}, home={str(home)!r})
        agent.echo(1)
        seen = []

        def fork_during_the_call():
            time.sleep(0.5)  # the main thread is in nap() by now, its wakeup fd armed
            pid = os.fork()
            if pid == 0:
                os._exit(0 if signal.set_wakeup_fd(-1) == -1 else 5)
            _, status = os.waitpid(pid, 0)
            seen.append(os.waitstatus_to_exitcode(status))

        forker = threading.Thread(target=fork_during_the_call)
        forker.start()
        result = agent.nap(1.5)["result"]
        forker.join()
        print(result, seen)
    """
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "rested [0]", (done.stdout, done.stderr)
