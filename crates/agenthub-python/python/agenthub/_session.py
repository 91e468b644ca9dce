"""One native runtime per set of settings, shared by the agents loaded with them, and made
again in a forked child (a child never uses or drops its parent's runtime: the extension
module leaks the parent's copy, so the parent's workers are left alone)."""

from __future__ import annotations

import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from . import _native

_LOCK = threading.Lock()
_SESSIONS: dict[tuple[Any, ...], "Session"] = {}
_EXECUTOR: ThreadPoolExecutor | None = None


class Session:
    """A native runtime, remade on first use in a forked child."""

    __slots__ = ("_args", "_pid", "_native", "_lock")

    def __init__(self, home: str | None, settings: tuple[tuple[str, str], ...], auto_install: bool | None):
        self._args = (home, settings, auto_install)
        self._lock = threading.Lock()
        self._native = _native.Runtime(home, list(settings), auto_install)
        self._pid = os.getpid()

    @property
    def native(self) -> _native.Runtime:
        """The runtime of this process."""
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    home, settings, auto_install = self._args
                    self._native = _native.Runtime(home, list(settings), auto_install)
                    self._pid = os.getpid()
        return self._native

    @property
    def pid(self) -> int:
        """The process whose runtime this is."""
        return self._pid


def session(home: str | os.PathLike[str] | None, settings: dict[str, Any], auto_install: bool | None) -> Session:
    """The shared session for these settings (made on first use)."""
    items = tuple(sorted((key, _text(value)) for key, value in settings.items() if value is not None))
    key = (os.fspath(home) if home is not None else None, items, auto_install)
    with _LOCK:
        found = _SESSIONS.get(key)
        if found is None:
            found = Session(key[0], items, auto_install)
            _SESSIONS[key] = found
        return found


def _text(value: Any) -> str:
    """A setting's value as its ``AGENTHUB_*`` variable would give it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def executor() -> ThreadPoolExecutor:
    """The threads async calls run on (the GIL is released while they wait)."""
    global _EXECUTOR
    with _LOCK:
        if _EXECUTOR is None:
            _EXECUTOR = ThreadPoolExecutor(max_workers=64, thread_name_prefix="agenthub-call")
        return _EXECUTOR


def _after_fork_in_child() -> None:
    # Locks another thread held at fork() time stay held in the child: new ones. The
    # sessions are kept (their runtimes are remade on first use); the executor's threads
    # did not survive the fork.
    global _LOCK, _EXECUTOR
    _LOCK = threading.Lock()
    _EXECUTOR = None
    for found in _SESSIONS.values():
        found._lock = threading.Lock()
    # Forked while the main thread waited in a call: Python's wakeup fd is still the
    # parent's Ctrl-C pipe, whose reader is the parent's thread. Unset it here.
    ours = _native.interrupt_fd()
    if ours >= 0:
        try:
            previous = signal.set_wakeup_fd(-1)
            if previous != ours:
                signal.set_wakeup_fd(previous)
        except ValueError:  # not the main thread of the main interpreter
            pass


os.register_at_fork(after_in_child=_after_fork_in_child)
