# agenthub warm-worker bootstrap: imports an agent once and serves calls to it.
#
#   <venv>/bin/python -u -c <this source> <agent_dir> <dispatch> <methods> [<max_stdout> [isolated]]
#
# run with cwd = <agent_dir>; <dispatch> is auto | main | instance; <methods> is the
# manifest's method names, comma-separated; `isolated` makes this worker a zygote that
# forks a child per call (unless the import left threads running). Python 3.8+, standard library only.
# The protocol (newline-delimited JSON on the original fd 0 and fd 1) and what this script
# guarantees are in docs/design/workers.md; the messages as types are warm/protocol.rs,
# whose tests run this script: keep the three in step.

import ast
import io
import json
import os
import sys
import traceback

# Private references to everything the serving loop uses, taken before the agent is
# imported: an agent that patches `json.dumps`, `os.chdir` or a builtin changes what its
# own code sees, never the protocol. (Names bound here shadow the builtins module.)
from builtins import (  # noqa: E402
    BaseException, ChildProcessError, Exception, KeyboardInterrupt, OSError, SystemExit, ValueError,
    bool, callable, dict, getattr, int, isinstance, len, list, print, str, type,
)

_encode = json.JSONEncoder().encode  # json.dumps' defaults: ensure_ascii, NaN bare
_decode = json.JSONDecoder().decode
_TextIOWrapper, _BytesIO = io.TextIOWrapper, io.BytesIO
_format_exception = traceback.format_exception
_os_exit, _getpid, _getcwd, _chdir, _kill, _waitpid, _waitid = (
    os._exit, os.getpid, os.getcwd, os.chdir, os.kill, os.waitpid, os.waitid)
_listdir, _os_open, _os_read, _os_close = os.listdir, os.open, os.read, os.close
_ENVIRON = os.environ
_monotonic = __import__("time").monotonic
_monotonic_ns = __import__("time").monotonic_ns
_sleep = __import__("time").sleep


# Isolated mode: a byte shared with the call's child, set once the child's reply is out.
_REPLIED = [None]


def _send(channel, message):
    # ensure_ascii (the default) keeps every line pure ASCII; json escapes newlines.
    line = _encode(message).encode("ascii") + b"\n"
    _mark_replied()
    channel.write(line)
    channel.flush()


def _mark_replied():
    # Isolated mode: set before the answer is written, so that a child killed while it
    # writes is never answered a second time by the zygote (a second line with the same
    # id would be read by the next call); at worst that call times out.
    if _REPLIED[0] is not None:
        _REPLIED[0][0] = 1


_quote = json.encoder.encode_basestring_ascii  # what _encode does to a str, in C


def _send_reply(channel, rid, stdout, code):
    # _send of {"id", "stdout", "exit_code"} without building and walking a dict.
    line = b'{"id": %d, "stdout": %s, "exit_code": %d}\n' % (rid, _quote(stdout).encode("ascii"), code)
    _mark_replied()
    channel.write(line)
    channel.flush()


def _codec(stream):
    # The encoding and error handler of a text stream, as one-shot stdout would have them.
    return (getattr(stream, "encoding", None) or "utf-8", getattr(stream, "errors", None) or "strict")


def _describe(exc):
    try:
        return "{}: {}".format(type(exc).__name__, exc)
    except Exception:  # an exception whose str() raises
        return type(exc).__name__


def _print_exc(exc):
    # A traceback on sys.stderr without the frames of this script and of importlib, as
    # `python agent.py` would show it.
    tb = exc.__traceback__
    while tb and (tb.tb_frame.f_code.co_filename == "<string>"
                  or tb.tb_frame.f_code.co_filename.startswith("<frozen importlib")):
        tb = tb.tb_next
    try:
        text = "".join(_format_exception(type(exc), exc, tb))
    except BaseException:  # the agent broke traceback formatting: the one line left
        text = _describe(exc) + "\n"
    try:
        sys.stderr.write(text)
    except BaseException:
        pass


def _exit_status(code):
    # What the interpreter would exit with for SystemExit(code).
    if code is None:
        return 0
    if isinstance(code, int):
        # Beyond a C long, CPython exits with -1 & 0xFF.
        return code & 0xFF if -(2 ** 63) <= code < 2 ** 63 else 255
    print(code, file=sys.stderr)
    return 1


# main_guard.rs reads agent.py by the same rule for `info`; its test runs this function.
def _main_guard(source):
    """How agent.py's single `if __name__ == "__main__":` block calls main(), or None.

    'call' for `main()`; 'exit' for `sys.exit(main())`, `exit(main())` or
    `raise SystemExit(main())`; 'async' for `asyncio.run(main())`. Any other block (more
    statements, an else branch, arguments) cannot be replayed faithfully.
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None

    def is_name_main(test):
        if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
            return False
        sides = [test.left, test.comparators[0]]
        names = [s.id for s in sides if isinstance(s, ast.Name)]
        consts = [s.value for s in sides if isinstance(s, ast.Constant)]
        return names == ["__name__"] and consts == ["__main__"]

    def is_main_call(node):
        return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "main"
                and not node.args and not node.keywords)

    def callee(node):
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            return node.value.id + "." + node.attr
        return None

    guards = [n for n in tree.body if isinstance(n, ast.If) and is_name_main(n.test)]
    if len(guards) != 1 or guards[0].orelse or len(guards[0].body) != 1:
        return None
    stmt = guards[0].body[0]
    if isinstance(stmt, ast.Raise) and stmt.cause is None:
        wrapper, allowed = stmt.exc, {"SystemExit": "exit"}
    elif isinstance(stmt, ast.Expr):
        if is_main_call(stmt.value):
            return "call"
        wrapper, allowed = stmt.value, {"sys.exit": "exit", "exit": "exit", "quit": "exit", "asyncio.run": "async"}
    else:
        return None
    if (isinstance(wrapper, ast.Call) and len(wrapper.args) == 1 and not wrapper.keywords
            and is_main_call(wrapper.args[0])):
        return allowed.get(callee(wrapper.func))
    return None


def _find_class(module, methods):
    """(class, None) for instance dispatch, or (None, why not)."""
    import inspect

    if not methods or any(m.startswith("_") for m in methods):
        return None, "instance dispatch needs public manifest methods"

    def covers(cls):
        try:
            return all(callable(getattr(cls, m, None)) for m in methods)
        except Exception:
            return False

    found = []
    for value in list(vars(module).values()):  # imported classes count too
        if isinstance(value, type) and all(value is not c for c in found) and covers(value):
            found.append(value)
    # A base class and its subclass may both qualify: the most derived wins, then one
    # defined in agent.py over imported ones.
    found = [c for c in found if not any(o is not c and issubclass(o, c) for o in found)]
    own = [c for c in found if getattr(c, "__module__", None) == module.__name__]
    if len(found) > 1 and own:
        found = own
    if len(found) != 1:
        names = ", ".join(sorted(c.__name__ for c in found)) or "none"
        return None, "no single class has every manifest method (candidates: {})".format(names)
    cls = found[0]
    try:
        params = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        params = []
    if any(p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
        return None, "{}() needs constructor arguments".format(cls.__name__)
    return cls, None


def _prepare(agent_dir, requested, methods):
    """Imports the agent; returns (dispatch, target, form, reason)."""
    path = os.path.join(agent_dir, "agent.py")
    form = None
    if requested in ("auto", "main"):
        with open(path, "rb") as f:
            form = _main_guard(f.read())
        if form is None:
            if requested == "auto":
                # Not imported at all: a script-style agent does its work at import time.
                return "none", None, None, 'agent.py has no `if __name__ == "__main__": main()` block'
            form = "call"
    elif requested != "instance":
        raise ValueError("unknown dispatch {!r}".format(requested))

    import importlib.util

    spec = importlib.util.spec_from_file_location("agent", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["agent"] = module  # the agent's own `import agent` finds this module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop("agent", None)
        raise

    if requested == "instance":
        cls, reason = _find_class(module, methods)
        if cls is None:
            return "none", None, None, reason
        return "instance", cls(), None, None  # a failing constructor is an import error
    target = getattr(module, "main", None)
    if not callable(target):
        return "none", None, None, "agent.py has no callable main()"
    return "main", target, form, None


_PRCTL = [None]  # libc's prctl, looked up once (a fork per call sets it again)


def _become_subreaper():
    # PR_SET_CHILD_SUBREAPER: a process that a call started and that daemonized (double
    # fork, setsid) is re-parented to the worker, not to init, so the sweep after the call
    # still finds it. Without ctypes the sweep sees only what stays below the worker.
    try:
        if _PRCTL[0] is None:
            import ctypes

            _PRCTL[0] = ctypes.CDLL(None, use_errno=True).prctl
        _PRCTL[0](36, 1, 0, 0, 0)
    except Exception:
        pass


def _start_time(pid):
    # Field 22 of /proc/<pid>/stat (after the parenthesised name): with the pid, an identity
    # that a reused pid does not share. None when the process is gone.
    try:
        fd = _os_open("/proc/{}/stat".format(pid), os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = _os_read(fd, 4096)
        finally:
            _os_close(fd)
        return int(data[data.rindex(b")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _has_children():
    """Whether this process has children (living or not yet reaped): one system call."""
    try:
        _waitid(_P_ALL, 0, _WAIT_ANY)
    except ChildProcessError:
        return False
    except OSError:
        pass
    return True


_P_ALL, _WAIT_ANY = os.P_ALL, os.WEXITED | os.WNOHANG | os.WNOWAIT


def _children():
    """{pid: start time} of this process's children (living or not yet reaped)."""
    me = _getpid()
    if not _has_children():  # the cheap question first
        return {}
    found = {}
    try:
        entries = _listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            fd = _os_open("/proc/" + entry + "/stat", os.O_RDONLY | os.O_CLOEXEC)
            try:
                data = _os_read(fd, 4096)
            finally:
                _os_close(fd)
            fields = data[data.rindex(b")") + 2:].split()
            if int(fields[1]) == me:
                found[int(entry)] = int(fields[19])
        except (OSError, ValueError, IndexError):
            continue
    return found


def _end_strays(kept):
    """Kills and reaps every child not in `kept` (the children the import left), and what
    they leave behind (re-parented here), in bounded rounds. Returns how many."""
    ended = 0
    deadline = _monotonic() + 2.0
    for _ in range(64):
        strays = [pid for pid, start in _children().items() if kept.get(pid) != start]
        if not strays:
            break
        for pid in strays:  # unreaped children of ours: their pids cannot be reused yet
            try:
                _kill(pid, 9)
            except OSError:
                pass
        for pid in strays:
            while True:
                try:
                    done, _status = _waitpid(pid, os.WNOHANG)
                except ChildProcessError:  # reaped by the agent's own code meanwhile
                    break
                if done or _monotonic() > deadline:
                    break
                _sleep(0.001)
            ended += 1
        if _monotonic() > deadline:
            break
    return ended


def _restore_environ(saved):
    """os.environ (and the C environment that children inherit) as `saved` had it."""
    if os.environ is not _ENVIRON:
        os.environ = _ENVIRON
    data = getattr(_ENVIRON, "_data", None)
    if data is not None and data == saved[0]:
        return
    now = dict(_ENVIRON)
    for key in now:
        if key not in saved[1]:
            del _ENVIRON[key]
    for key, value in saved[1].items():
        if now.get(key) != value:
            _ENVIRON[key] = value


def _snapshot_environ():
    data = getattr(_ENVIRON, "_data", None)
    return (dict(data) if data is not None else None, dict(_ENVIRON))


# The output cap of a call (bytes; 0 = none) and where to say that it was hit.
_LIMIT = [0]
_CURRENT = [None, None, None]  # channel, request id, the call's sink


class _Sink(_BytesIO):
    def close(self):  # an agent closing sys.stdout must not lose what it printed
        pass

    def write(self, data):
        n = super().write(data)
        if _LIMIT[0] and self.tell() > _LIMIT[0]:
            # Over the cap, as one-shot output would be: say so and leave at once (the
            # runtime replaces this worker); nothing more is buffered.
            channel, rid = _CURRENT[0], _CURRENT[1]
            try:
                sys.__stderr__.flush()
            except Exception:
                pass
            if channel is not None:
                _send(channel, {"id": rid, "stdout": "", "exit_code": 1, "stdout_limit": True})
            _os_exit(1)
        return n


def _printed(sink):
    # The runtime reads one-shot stdout as UTF-8, lossily; decoding here the same way also
    # keeps lone surrogates (which serde_json rejects) out of the response.
    return sink.getvalue().decode("utf-8", "replace")


def _exit_in_call(status):
    """os._exit during a call: the output so far is answered, as a one-shot process's
    unbuffered stdout would have reached its reader, then the worker exits (and is
    replaced)."""
    channel, rid, sink = _CURRENT
    if (channel is not None and sink is not None and isinstance(status, int)
            and _getpid() == _CURRENT_PID[0]):
        try:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:
                    pass
            reply = {"id": rid, "stdout": _printed(sink), "exit_code": status & 0xFF}
            if _REPLIED[0] is None:  # a warm worker leaves; an isolated call's child only
                reply["exiting"] = True
            _send(channel, reply)
        except BaseException:
            pass
    _os_exit(status)  # as the real one: a TypeError for a status that is not an int


_CURRENT_PID = [None]  # the worker's pid: a forked child's os._exit is its own business


def _call(dispatch, target, form, request):
    """Runs one call; returns (stdout text, exit code) as a one-shot process would give."""
    traceparent = request.get("traceparent")
    if traceparent is not None:  # the call is traced: as a one-shot process's environment has it
        _ENVIRON["TRACEPARENT"] = traceparent
        tracestate = request.get("tracestate")
        if tracestate is not None:
            _ENVIRON["TRACESTATE"] = tracestate
        else:
            _ENVIRON.pop("TRACESTATE", None)
    sink = _Sink()
    encoding, errors = _codec(sys.stdout)  # as the agent left stdout at import
    sys.stdout = _TextIOWrapper(sink, encoding=encoding, errors=errors, write_through=True)
    reply, code = "", 0
    _CURRENT[2] = sink
    posix = sys.modules.get("posix")
    os._exit = _exit_in_call
    if posix is not None:
        posix._exit = _exit_in_call
    try:
        if dispatch == "main":
            sys.argv = ["agent.py", request["request"]]
            if form == "call":
                target()
            elif form == "exit":
                raise SystemExit(target())
            else:
                import asyncio

                asyncio.run(target())
        else:
            value = getattr(target, request["method"])(**_decode(request["request"])["parameters"])
            reply = _encode({"result": value}) + "\n"  # defaults: NaN passes as in one-shot
    except SystemExit as exc:
        code = _exit_status(exc.code)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # as an uncaught exception ends `python agent.py`
        _print_exc(exc)
        code = 1
        if dispatch == "instance":  # as the example agents' main() report a failure
            reply = _encode({"error": _describe(exc)}) + "\n"
    finally:
        os._exit = _os_exit
        if posix is not None:
            posix._exit = _os_exit
        _CURRENT[2] = None
    for stream in (sys.stdout, sys.stderr):  # the interpreter flushes these at exit
        try:
            stream.flush()
        except Exception:
            pass
    printed = _printed(sink)
    if printed and reply and not printed.endswith("\n"):
        printed += "\n"
    return printed + reply, code


def _fork_hazard():
    """Why forking this process per call is unsafe (threads left running by the import),
    or None. A fork copies only the calling thread: a lock another thread holds stays held
    in the child forever."""
    threading = sys.modules.get("threading")
    if threading is not None:
        try:
            count = threading.active_count()
        except Exception:
            count = 1
        if count > 1:
            return "the import left {} Python threads running".format(count - 1)
    try:
        tasks = len(_listdir("/proc/self/task"))
    except OSError:
        tasks = 1
    if tasks > 1:
        return "the import left {} OS threads running".format(tasks - 1)
    return None


def _fork_call(channel, channel_in, dispatch, target, form, request, rid, getrusage, kept):
    """Isolated mode: runs one call in a fork of this zygote. The child answers on the
    channel and exits; when it died without answering, the answer is written here as a
    crashed one-shot process would give it. A child that answered is reaped once it
    answered (not once it exited): its exit overlaps the runtime's reading the answer."""
    replied = _REPLIED_MAP[0]
    replied[0] = 0
    # The call's own temporary directory (its TMPDIR), removed after it whatever happens.
    calltmp = os.path.join(_ENVIRON.get("TMPDIR") or "/tmp", "agenthub-call-" + os.urandom(8).hex())
    # The child writes a byte here once it answered (os.pipe: not inherited across exec).
    notify_r, notify_w = os.pipe()
    _FORKING[0] = True
    try:
        child = os.fork()
    except OSError as exc:  # no process to be had (a pids limit, memory): this call fails
        _os_close(notify_r)
        _os_close(notify_w)
        print("agenthub worker: cannot fork for the call: " + _describe(exc), file=sys.stderr)
        sys.stderr.flush()
        _send(channel, {"id": rid, "stdout": "", "exit_code": 1})
        return
    finally:
        _FORKING[0] = False
    if child == 0:
        try:
            _os_close(notify_r)
            _REPLIED[0] = replied
            _CURRENT_PID[0] = _getpid()
            _CURRENT[0], _CURRENT[1] = channel, rid
            fd = _os_open(os.devnull, os.O_RDWR)  # the child never reads requests
            os.dup2(fd, channel_in.fileno(), inheritable=False)
            _os_close(fd)
            _become_subreaper()  # not inherited: what the call daemonizes comes back here
            try:
                os.mkdir(calltmp, 0o700)
                _ENVIRON["TMPDIR"] = calltmp
                tempfile = sys.modules.get("tempfile")
                if tempfile is not None:  # it caches the directory it found first
                    tempfile.tempdir = calltmp
            except OSError:
                pass  # nowhere writable: the call gets the zygote's TMPDIR
            stdout, code = _call(dispatch, target, form, request)
            _end_strays({})
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:
                    pass
            reply = {"id": rid, "stdout": stdout, "exit_code": code}
            if getrusage is not None:
                reply["peak_rss"] = getrusage(0).ru_maxrss * 1024
            _send(channel, reply)
            os.write(notify_w, b"!")
            _report_imports(replied)  # after the answer: not part of the call's time
            _os_exit(0)
        except BaseException:
            _os_exit(1)
    _os_close(notify_w)
    try:
        answered = _await_answer(child, notify_r, replied)
    finally:
        _os_close(notify_r)
    if answered:
        # The runtime reads the answer meanwhile: the child's exit, the clean-up and any
        # learning happen while no request waits (learning gives way to one).
        _reap_answered(child, calltmp, channel_in.fileno(), kept)
        return
    status = _wait_child(child)
    _end_strays(kept)  # what it left behind (re-parented here), before its files go
    _remove_calltmp(calltmp)
    if replied[0]:  # it answered, then died
        return
    reply = {"id": rid, "stdout": "", "exit_code": 1}
    if status is None:  # reaped elsewhere (the import ignores SIGCHLD): a failure, unknown
        pass
    elif os.WIFSIGNALED(status):
        reply["signal"] = os.WTERMSIG(status)
    elif os.WIFEXITED(status):
        reply["exit_code"] = os.WEXITSTATUS(status)
    _send(channel, reply)


def _await_answer(child, notify_r, replied):
    """Waits until the call's child answered (True) or exited (False). Without pidfds
    (Linux before 5.3), until it exited."""
    try:
        pidfd = os.pidfd_open(child)
    except (AttributeError, OSError):
        return False
    try:
        poller = _select.poll()
        poller.register(notify_r, _select.POLLIN)
        poller.register(pidfd, _select.POLLIN)
        while True:
            try:
                events = dict(poller.poll())
            except InterruptedError:
                continue
            if replied[0] and notify_r in events:
                return True  # answered (a byte, or its end closed as it leaves)
            if pidfd in events or notify_r in events:
                return False  # gone (or its end closed without an answer): reap it
    finally:
        _os_close(pidfd)


def _wait_child(child):
    """The child's wait status; None when it was reaped elsewhere (a SIGCHLD handler of
    the agent's, or SIGCHLD ignored)."""
    while True:
        try:
            _pid, status = _waitpid(child, 0)
            return status
        except InterruptedError:
            continue
        except ChildProcessError:
            return None


def _remove_calltmp(calltmp):
    try:
        os.rmdir(calltmp)  # mostly empty: one system call
    except FileNotFoundError:
        pass
    except OSError:
        _RMTREE[0](calltmp, ignore_errors=True)


def _reap_answered(child, calltmp, channel_fd, kept):
    """A call's child that answered: reaped (killed if it is still there after
    _LEAVE_LIMIT), its temporary directory removed, what it imported learned."""
    deadline = _monotonic() + _LEAVE_LIMIT
    while True:
        try:
            done, _status = _waitpid(child, os.WNOHANG)
        except ChildProcessError:
            break
        if done:
            break
        if _monotonic() > deadline:
            _kill(child, 9)
            _wait_child(child)
            break
        _sleep(0.0002)
    _end_strays(kept)  # what it left behind (re-parented here), before its files go
    _remove_calltmp(calltmp)
    _learn_imports(_REPLIED_MAP[0], channel_fd)


_LEAVE_LIMIT = 2.0  # seconds a child that answered may take to exit


_select = __import__("select")


_FORKING = [False]  # a fork of ours for a call: the child keeps the channel
_RMTREE = [None]
_REPLIED_MAP = [None]

# Learned imports (isolated mode). A call that imports libraries (`import aisuite` inside
# a method) would pay for that import in every fork, where a warm worker pays once. So a
# call's child reports, after its answer, the modules it imported that the zygote lacks;
# the zygote imports them too, first in a throwaway fork (they are taken only if that
# fork shows no thread left running and exits cleanly), and every later fork starts with
# them. Only libraries: nothing of the agent's own directory beyond its environment.
_SHARED_BYTES = 64 * 1024  # the byte the child sets when it answered, then the names
_ZYGOTE_MODULES = [frozenset()]
_LIBRARY_PREFIXES = []  # realpaths of sys.prefix and sys.base_prefix, with a slash
_LEARNED = [0]  # rounds of learning so far, at most _MAX_LEARN
_MAX_LEARN = 8
_REFUSED = set()  # names whose import failed, or left threads, in the trial fork
_IMPORT_TRIAL = 5.0  # seconds the trial fork may take
_GAVE_WAY = [0]  # trials in a row that gave way to a request


def _is_library(path):
    """Whether `path` (a module's file) belongs to the interpreter or its environment
    (`sys.prefix`, `sys.base_prefix`), not to the agent's own code."""
    if not isinstance(path, str):
        return False
    try:
        real = os.path.realpath(path)
    except (OSError, ValueError):
        return False
    return any(real.startswith(prefix) for prefix in _LIBRARY_PREFIXES)


def _report_imports(shared):
    """In a call's child: the library modules imported since the fork, for the zygote."""
    known = _ZYGOTE_MODULES[0]
    if _LEARNED[0] >= _MAX_LEARN or len(sys.modules) <= len(known):
        return
    names = []
    for name, module in list(sys.modules.items()):
        if name in known or name in _REFUSED or module is None or name in ("__main__", "agent"):
            continue
        # Built-in modules have no file; everything else must come from the environment.
        path = getattr(module, "__file__", None) if name not in sys.builtin_module_names else None
        if name not in sys.builtin_module_names and not _is_library(path):
            continue  # the agent's own code: imported where it says, per call
        names.append(name)
    data = "\n".join(names).encode("utf-8", "replace")[:_SHARED_BYTES - 8]
    shared[1:5] = len(data).to_bytes(4, "little")
    shared[5:5 + len(data)] = data


def _import_all(names):
    """Imports the names that are libraries (checked here, not trusted from the child:
    the module's file, found before it runs, is in the environment), packages first."""
    import importlib
    import importlib.util

    for name in sorted(names, key=lambda n: (n.count("."), n)):
        if name in sys.modules:
            continue
        parent = name.rpartition(".")[0]
        if parent and parent not in sys.modules:  # refused, or failed: never imported here
            _REFUSED.add(name)
            continue
        try:
            if name not in sys.builtin_module_names:
                spec = importlib.util.find_spec(name)  # its parent is imported (and was checked)
                if spec is None or not _is_library(spec.origin):
                    _REFUSED.add(name)
                    continue
            importlib.import_module(name)
        except KeyboardInterrupt:
            raise
        except BaseException:
            _REFUSED.add(name)


def _learn_imports(shared, channel_fd):
    """In the zygote, after a call's child is gone: imports what it reported. The trial
    fork may take _IMPORT_TRIAL at most, and gives way to a request that comes meanwhile
    (tried again after that call) twice; the third time the request waits for it."""
    size = int.from_bytes(shared[1:5], "little")
    if not size:
        return
    shared[1:5] = b"\0\0\0\0"
    text = bytes(shared[5:5 + min(size, _SHARED_BYTES - 8)]).decode("utf-8", "replace")
    names = [n for n in text.split("\n") if n and n not in sys.modules and n not in _REFUSED]
    if not names or _LEARNED[0] >= _MAX_LEARN:
        return
    _LEARNED[0] += 1
    try:
        trial = os.fork()
    except OSError:
        return  # tried again after a later call
    if trial == 0:
        try:
            _import_all(names)
            _os_exit(0 if _fork_hazard() is None else 3)
        except BaseException:
            _os_exit(4)
    poller = _select.poll()
    if _GAVE_WAY[0] < 2:
        poller.register(channel_fd, _select.POLLIN)
    deadline = _monotonic() + _IMPORT_TRIAL
    status, waiting = None, False
    while status is None:
        try:
            done, code = _waitpid(trial, os.WNOHANG)
        except ChildProcessError:
            break
        if done:
            status = code
            break
        waiting = bool(poller.poll(0))
        if waiting or _monotonic() > deadline:
            _kill(trial, 9)
            _wait_child(trial)
            break
        _sleep(0.002)
    if waiting:
        _GAVE_WAY[0] += 1
        _LEARNED[0] -= 1
        return  # a call first; the next child reports these again
    _GAVE_WAY[0] = 0
    if status is None or not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
        _REFUSED.update(names)
        return
    _import_all(names)
    if _fork_hazard() is not None:  # the trial fork said otherwise: do not fork from here
        print("agenthub worker: an import left threads running; this zygote leaves", file=sys.stderr)
        sys.stderr.flush()
        _os_exit(1)
    _ZYGOTE_MODULES[0] = frozenset(sys.modules)
    _gc_freeze()


def _gc_freeze():
    # What the zygote holds is never collected by a fork's collector: the forks do not
    # touch (and copy) its pages to look at it.
    gc = sys.modules.get("gc")
    if gc is not None:
        gc.freeze()


def _parse(line):
    """(id or None, request or None, why the request is bad)."""
    try:
        request = _decode(line.decode("utf-8"))
    except Exception as exc:
        return None, None, "request is not JSON: " + _describe(exc)
    if not isinstance(request, dict):
        return None, None, "request is not a JSON object"
    rid = request.get("id")
    if type(rid) is int and type(request.get("method")) is str and type(request.get("request")) is str:
        return rid, request, None  # what the runtime sends (bool is no int here)
    if not isinstance(rid, int) or isinstance(rid, bool):
        rid = None
    fields = {"id": int, "method": str, "request": str}
    bad = [k for k, t in fields.items() if not isinstance(request.get(k), t) or isinstance(request.get(k), bool)]
    if bad:
        return rid, None, "request lacks or mistypes: " + ", ".join(bad)
    return rid, request, None


_SPIN_NS = 100_000


def _spin_poller(fd):
    """``poll(timeout)`` on the channel's fd, or None when this process may use one CPU only."""
    try:
        if len(os.sched_getaffinity(0)) < 2:
            return None
        import select

        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP)
        return poller.poll
    except (AttributeError, OSError, ImportError):
        return None


def _serve(argv):
    if len(argv) not in (4, 5, 6) or (len(argv) == 6 and argv[5] != "isolated"):
        print("usage: python -u -c <bootstrap> <agent_dir> auto|main|instance <methods> [max_stdout_bytes "
              "[isolated]]", file=sys.stderr)
        return 2
    isolated = len(argv) == 6
    if len(argv) >= 5:
        try:
            _LIMIT[0] = max(0, int(argv[4]))
        except ValueError:
            print("agenthub worker: max_stdout_bytes must be a whole number", file=sys.stderr)
            return 2
    agent_dir, requested = os.path.abspath(argv[1]), argv[2]
    methods = [m for m in argv[3].split(",") if m]

    # The protocol channel: private duplicates of fd 0 and fd 1 (os.dup makes them
    # non-inheritable, so subprocesses never get them). Then fd 1 -> stderr, so print() and
    # C-level writes cannot corrupt the channel, and fd 0 -> /dev/null, so input() raises
    # EOFError as in one-shot.
    channel_in = os.fdopen(os.dup(0), "rb")
    channel = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.close(null)
    in_codec, out_codec = _codec(sys.stdin), _codec(sys.stdout)
    sys.stdin = io.open(0, "r", encoding=in_codec[0], errors=in_codec[1], closefd=False)
    sys.stdout = io.open(1, "w", buffering=1, encoding=out_codec[0], errors=out_codec[1], closefd=False)

    channel_fds = (channel_in.fileno(), channel.fileno())  # ints: a hook holding the file
    # objects crashes Python 3.8 at exit

    def forget_channel():
        # A child forked by agent code (os.fork, multiprocessing) must not hold the channel
        # open (the runtime would not see EOF when the worker dies) nor write to it.
        if _FORKING[0]:  # the zygote's own fork for a call: it answers on the channel
            return
        _REPLIED[0] = None
        fd = os.open(os.devnull, os.O_RDWR)
        for target in channel_fds:
            os.dup2(fd, target, inheritable=False)
        os.close(fd)

    os.register_at_fork(after_in_child=forget_channel)

    # Import as `python agent.py` would see it: agent_dir first on sys.path (in place of
    # the '' that -c puts there), sys.argv[0] 'agent.py'; the module is named `agent`.
    if sys.path and sys.path[0] == "":
        del sys.path[0]
    sys.path.insert(0, agent_dir)
    sys.argv = ["agent.py"]
    _become_subreaper()
    ready = {"type": "ready", "pid": _getpid(), "python": sys.version.split()[0]}
    try:
        dispatch, target, form, reason = _prepare(agent_dir, requested, methods)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # SystemExit included: the import did not finish
        _print_exc(exc)
        sys.stderr.flush()
        _send(channel, {"type": "error", "error": _describe(exc)})
        return 1
    ready["dispatch"] = dispatch
    if dispatch == "none":
        ready["reason"] = reason
    elif dispatch == "instance":
        ready["class"] = type(target).__name__
    getrusage = None
    if isolated and dispatch != "none":
        hazard = _fork_hazard()
        if hazard is None:
            try:
                import mmap
                import resource
                import shutil

                _RMTREE[0] = shutil.rmtree
                _REPLIED_MAP[0] = mmap.mmap(-1, _SHARED_BYTES)  # anonymous and shared with children
                getrusage = resource.getrusage
            except (ImportError, OSError) as exc:
                hazard = "cannot share memory with a forked child: " + _describe(exc)
        ready["isolated"] = hazard is None
        if hazard is not None:
            isolated = False
            ready["fork_refused"] = hazard + "; served warm instead"
        else:
            for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}:
                _LIBRARY_PREFIXES.append(os.path.join(os.path.realpath(prefix), ""))
            if not hasattr(os, "pidfd_open"):  # the zygote cannot tell an answer from an exit
                _LEARNED[0] = _MAX_LEARN
            _ZYGOTE_MODULES[0] = frozenset(sys.modules)
            import gc  # noqa: F401  (for _gc_freeze)

            _gc_freeze()
    sys.stderr.flush()
    _send(channel, ready)
    if dispatch == "none":
        return 0

    # The state every call starts from, restored after each: as the import left it.
    streams = (sys.stdin, sys.stdout, sys.stderr)
    argv, path_list, path = list(sys.argv), sys.path, list(sys.path)
    cwd, pid = _getcwd(), _getpid()
    _CURRENT_PID[0] = pid
    environ = _snapshot_environ()
    kept = _children()  # processes the import started may stay; a call's may not
    # Back-to-back calls: after an answer, poll the channel for up to _SPIN_NS before
    # sleeping in read, when the runtime allowed it with the request (few requests out, so
    # the CPUs are not needed elsewhere), the last request came that soon after the answer
    # before it, and this process may run on two CPUs or more (on one, spinning only
    # delays the caller). Waking a sleeping process on another CPU costs tens of
    # microseconds on a VM, as much as the rest of a warm call; the spin costs at most
    # _SPIN_NS of CPU per call.
    spin = _spin_poller(channel_in.fileno())
    quick, answered = False, 0
    while True:
        if spin is not None and quick:
            end = answered + _SPIN_NS
            while not spin(0) and _monotonic_ns() < end:
                pass
        line = channel_in.readline()
        if not line:
            return 0  # EOF: the runtime is done with this worker
        gap = _monotonic_ns() - answered
        rid, request, problem = _parse(line)
        quick = spin is not None and gap < 2 * _SPIN_NS and request is not None and request.get("spin") is True
        if request is None:  # a runtime bug, not the agent's: say so and keep serving
            print("agenthub worker: " + problem, file=sys.stderr)
            sys.stderr.flush()
            _send(channel, {"id": rid, "stdout": "", "exit_code": 2, "error": problem})
            continue
        if isolated:
            _fork_call(channel, channel_in, dispatch, target, form, request, rid, getrusage, kept)
            continue
        _CURRENT[0], _CURRENT[1] = channel, rid
        stdout, code = _call(dispatch, target, form, request)
        if _getpid() != pid:  # a forked child returned from the call: it is no worker;
            try:  # what it printed goes to stderr rather than nowhere
                streams[2].write(stdout)
                streams[2].flush()
            finally:
                _os_exit(code)
        # What the call started and left running ends with it, as in one-shot: before the
        # answer (one system call when it started nothing).
        if _has_children():
            _end_strays(kept)
        sys.stdin, sys.stdout, sys.stderr = streams
        for stream in (sys.stdout, sys.stderr):  # the call's stderr reaches the runtime first
            try:
                stream.flush()
            except Exception:
                pass
        try:
            _chdir(cwd)
        except OSError as exc:  # e.g. the agent directory was removed: answer, then quit
            print("agenthub worker: cannot return to {}: {}".format(cwd, exc), file=sys.stderr)
            sys.stderr.flush()
            _send(channel, {"id": rid, "stdout": stdout, "exit_code": code, "exiting": True})
            return 1
        # The answer goes first; the rest of the interpreter's state is restored while the
        # runtime reads it. The next request is read only after that (the pipe holds it
        # meanwhile), so every call still starts from the state the import left.
        _send_reply(channel, rid, stdout, code)
        sys.argv = list(argv)
        if sys.path is not path_list or sys.path != path:
            path_list[:] = path
            sys.path = path_list
        _restore_environ(environ)
        answered = _monotonic_ns()


if __name__ == "__main__":  # `python -c`; the Ray driver's actors exec this for its functions
    sys.exit(_serve(sys.argv))
