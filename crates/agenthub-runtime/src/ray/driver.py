# agenthub Ray driver: runs agent calls in Ray actors, a pool of actors per agent, many
# calls in flight at once.
#
#   <python that has ray> -u -c <this source>
#
# Protocol: newline-delimited JSON on private duplicates of fd 0 and fd 1 (fd 1 itself
# goes to stderr, so nothing Ray prints can corrupt the channel). The messages, field by
# field, are the types in ray/protocol.rs (ToDriver in; Greeting, then Answer out), whose
# tests run this file's code: keep the two in step. EOF on stdin: every actor is killed,
# exit 0.
#
# Inside an actor the warm worker's own dispatch code runs (bootstrap.py, exec'd for its
# functions), so a call means the same thing on the cluster as in a local warm worker.

import json
import os
import sys
import threading
import time
import traceback

STDERR_TAIL = 64 * 1024
MAX_ARCHIVE_BYTES = 256 * 1024 * 1024
EXCLUDES = [".venv", ".venv.d", ".venv.lock", ".git", "__pycache__", ".agenthub-install.json"]

_channel_lock = threading.Lock()


def _send(channel, message):
    line = json.dumps(message).encode("ascii") + b"\n"
    with _channel_lock:
        channel.write(line)
        channel.flush()


def _describe(exc):
    try:
        return "{}: {}".format(type(exc).__name__, exc)
    except Exception:
        return type(exc).__name__


def _peak_rss(children=False):
    """Peak resident memory in bytes of the actor (or of its one-shot children)."""
    try:
        import resource

        who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
        return resource.getrusage(who).ru_maxrss * 1024
    except Exception:
        return None


def _actor_class(ray):
    @ray.remote(max_restarts=0, max_task_retries=0)
    class AgentActor:
        """One agent, imported once; calls run one at a time, as in a local warm worker."""

        def __init__(self, bootstrap, dispatch, methods, archive):
            import atexit
            import io
            import shutil
            import tempfile
            import zipfile

            # The agent directory, shipped through the object store (so any node can run
            # it), unpacked into a directory of this actor's own.
            self.dir = tempfile.mkdtemp(prefix="agenthub-agent-")
            atexit.register(shutil.rmtree, self.dir, True)
            with zipfile.ZipFile(io.BytesIO(archive)) as zf:
                zf.extractall(self.dir)
            os.chdir(self.dir)
            namespace = {"__name__": "agenthub_bootstrap"}
            exec(compile(bootstrap, "<agenthub-bootstrap>", "exec"), namespace)
            self.b = namespace
            if sys.path[:1] != [self.dir]:
                sys.path.insert(0, self.dir)
            sys.argv = ["agent.py"]
            self.dispatch, self.target, self.form, self.reason = namespace["_prepare"](self.dir, dispatch, methods)
            self.state = (list(sys.argv), list(sys.path), namespace["_snapshot_environ"]())

        def describe(self):
            return {"dispatch": self.dispatch, "reason": self.reason, "pid": os.getpid()}

        def call(self, method, request):
            import io
            import subprocess

            if self.dispatch == "none":
                # As a one-shot call: `python agent.py <request>` in the agent directory.
                proc = subprocess.run([sys.executable, "agent.py", request], cwd=self.dir,
                                      stdin=subprocess.DEVNULL, capture_output=True)
                return {"stdout": proc.stdout.decode("utf-8", "replace"), "exit_code": proc.returncode,
                        "stderr": proc.stderr[-STDERR_TAIL:].decode("utf-8", "replace"),
                        "peak_rss": _peak_rss(children=True)}
            captured, saved = io.StringIO(), sys.stderr
            sys.stderr = captured
            try:
                stdout, code = self.b["_call"](self.dispatch, self.target, self.form,
                                               {"method": method, "request": request})
            finally:
                sys.stderr = saved
                sys.argv = list(self.state[0])
                sys.path[:] = self.state[1]
                self.b["_restore_environ"](self.state[2])
                try:
                    os.chdir(self.dir)
                except OSError:
                    pass
            return {"stdout": stdout, "exit_code": code, "stderr": captured.getvalue()[-STDERR_TAIL:],
                    "peak_rss": _peak_rss()}

    return AgentActor


class Driver:
    def __init__(self, ray, channel, hello):
        self.ray = ray
        self.channel = channel
        self.per_agent = max(1, int(hello.get("actors_per_agent") or 1))
        # How long an actor may take to get its environment and import the agent.
        self.build_timeout = float(hello.get("build_timeout") or 600)
        self.starting = {}  # ObjectRef of an actor's describe() -> slot, until it is ready
        self.bootstrap = hello["bootstrap"]
        self.Actor = _actor_class(ray)
        self.lock = threading.Lock()
        self.pools = {}  # (agent_dir, key) -> list of slots
        self.pending = {}  # ObjectRef -> call
        self.by_id = {}  # id -> call
        self.archives = {}  # (agent_dir, key) -> ObjectRef of the zipped directory
        self.wake = threading.Event()
        self.closed = False

    # -- pools ---------------------------------------------------------------------------

    def _archive(self, agent_dir, key):
        """The agent directory as a zip in the object store (once per agent and key)."""
        cached = self.archives.get((agent_dir, key))
        if cached is not None:
            return cached
        import io
        import zipfile

        buf, total = io.BytesIO(), 0
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for root, dirs, files in os.walk(agent_dir, followlinks=False):
                rel = os.path.relpath(root, agent_dir)
                if rel == ".":
                    dirs[:] = [d for d in dirs if d not in EXCLUDES]
                    files = [f for f in files if f not in EXCLUDES]
                dirs[:] = [d for d in dirs if d != "__pycache__" and not os.path.islink(os.path.join(root, d))]
                for name in files:
                    path = os.path.join(root, name)
                    if os.path.islink(path) or not os.path.isfile(path):
                        continue  # regular files only
                    total += os.path.getsize(path)
                    if total > MAX_ARCHIVE_BYTES:
                        raise ValueError("the agent directory holds more than {} bytes".format(MAX_ARCHIVE_BYTES))
                    zf.write(path, os.path.relpath(path, agent_dir))
        ref = self.ray.put(buf.getvalue())
        self.archives[(agent_dir, key)] = ref
        return ref

    def _new_slot(self, call):
        env = {}
        if call["requirements"]:
            env["pip"] = list(call["requirements"])
        archive = self._archive(call["agent_dir"], call["key"])
        actor = self.Actor.options(runtime_env=env or None).remote(
            self.bootstrap, call["dispatch"], call["methods"], archive)
        slot = {"actor": actor, "queue": [], "spec": (call["agent_dir"], call["key"]), "ready": False,
                "build_deadline": time.monotonic() + self.build_timeout}
        # The environment build and the import are not the call's time (as locally, where
        # `build_timeout` bounds them): a call's clock starts when its actor is ready.
        slot["ready_ref"] = actor.describe.remote()
        self.starting[slot["ready_ref"]] = slot
        return slot

    def _slot_for(self, call):
        pool = self.pools.setdefault((call["agent_dir"], call["key"]), [])
        idle = [s for s in pool if not s["queue"]]
        if idle:
            return idle[0]
        if len(pool) < self.per_agent:
            pool.append(self._new_slot(call))
            return pool[-1]
        return min(pool, key=lambda s: len(s["queue"]))

    def _submit(self, call):
        slot = self._slot_for(call)
        call["slot"] = slot
        ref = slot["actor"].call.remote(call["method"], call["request"])
        call["ref"] = ref
        call["deadline"] = self._deadline(call) if slot["ready"] else None
        slot["queue"].append(call)
        self.pending[ref] = call

    @staticmethod
    def _deadline(call):
        timeout = call.get("timeout")
        return time.monotonic() + timeout if timeout else None

    def _ready(self, slot, ref):
        """An actor finished starting: its calls' clocks start, or they fail with why."""
        self.starting.pop(ref, None)
        try:
            self.ray.get(ref)
        except Exception as exc:
            self._fail_slot(slot, self._kind(exc), str(exc))
            return
        slot["ready"] = True
        for call in slot["queue"]:
            call["deadline"] = self._deadline(call)

    def _fail_slot(self, slot, kind, message):
        for call in list(slot["queue"]):
            self._finish(call, {"error": {"kind": kind, "message": message}})
        self._retire(slot)

    def _kind(self, exc):
        exceptions = self.ray.exceptions
        text = str(exc)
        if isinstance(exc, exceptions.RuntimeEnvSetupError) or "runtime env" in text.lower():
            return "environment"
        if "creation task" in text:
            return "import"
        return "actor_died"

    def _retire(self, slot):
        """Kills a slot's actor and removes it; its queued (not started) calls go to another."""
        pool = self.pools.get(slot["spec"], [])
        if slot in pool:
            pool.remove(slot)
        self.starting.pop(slot.get("ready_ref"), None)
        try:
            self.ray.kill(slot["actor"], no_restart=True)
        except Exception:
            pass
        waiting = slot["queue"][1:]
        slot["queue"] = []
        for call in waiting:
            self.pending.pop(call.get("ref"), None)
            self._submit(call)

    def _finish(self, call, message):
        self.pending.pop(call.get("ref"), None)
        self.by_id.pop(call["id"], None)
        slot = call.get("slot")
        if slot is not None and call in slot["queue"]:
            slot["queue"].remove(call)
        message["id"] = call["id"]
        _send(self.channel, message)

    # -- requests ------------------------------------------------------------------------

    def handle(self, message):
        kind = message.get("type")
        if kind == "call":
            call = dict(message)
            call["deadline"] = None
            with self.lock:
                self.by_id[call["id"]] = call
                try:
                    self._submit(call)
                except Exception as exc:
                    self._finish(call, {"error": {"kind": "environment", "message": _describe(exc)}})
            self.wake.set()
        elif kind == "cancel":
            with self.lock:
                call = self.by_id.get(message.get("id"))
                if call is not None:
                    self._stop(call, "cancelled", "the call was cancelled")
        elif kind == "status":
            # Asks a node for its Ray version (a task: it may take a worker's start), off the
            # reading thread.
            threading.Thread(target=self._status, args=(message.get("id"),), daemon=True).start()

    def _status(self, rid):
        ray = self.ray
        try:
            @ray.remote(num_cpus=0)
            def version():
                import ray as cluster_ray
                return cluster_ray.__version__

            cluster_version = ray.get(version.remote(), timeout=120)
        except Exception as exc:
            cluster_version = None
            sys.stderr.write("agenthub Ray driver: cannot ask a node for its version: {}\n".format(_describe(exc)))
        with self.lock:
            pools = [{"agent_dir": d, "actors": len(s), "in_flight": sum(len(x["queue"]) for x in s)}
                     for (d, _), s in self.pools.items()]
        _send(self.channel, {"id": rid, "type": "status", "pools": pools, "nodes": self._nodes(),
                             "cluster_ray_version": cluster_version})

    def _stop(self, call, kind, message):
        slot = call.get("slot")
        running = slot is not None and slot["queue"][:1] == [call]
        self._finish(call, {"error": {"kind": kind, "message": message}})
        if running:
            self._retire(slot)  # the only way to stop a running actor task
        elif slot is not None:
            try:
                self.ray.cancel(call["ref"])
            except Exception:
                pass

    def _nodes(self):
        try:
            return sum(1 for n in self.ray.nodes() if n.get("Alive"))
        except Exception:
            return None

    # -- results -------------------------------------------------------------------------

    def wait_loop(self):
        ray = self.ray
        while not self.closed:
            with self.lock:
                refs = list(self.pending) + list(self.starting)
            if not refs:
                self.wake.wait(0.5)
                self.wake.clear()
                continue
            try:
                ready, _ = ray.wait(refs, num_returns=1, timeout=0.05)
                if ready:
                    more, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
                    ready = list({r: None for r in ready + more})
            except Exception:
                ready = []
            now = time.monotonic()
            with self.lock:
                for ref in ready:
                    slot = self.starting.get(ref)
                    if slot is not None:
                        self._ready(slot, ref)
                for ref in ready:
                    call = self.pending.get(ref)
                    if call is not None:
                        self._collect(call, ref)
                for call in list(self.pending.values()):
                    if call["deadline"] is not None and now >= call["deadline"]:
                        self._stop(call, "timeout", "the call ran past its time limit")
                for slot in list(self.starting.values()):
                    if now >= slot["build_deadline"]:
                        self._fail_slot(slot, "environment", "the actor's environment was not ready within "
                                        "build_timeout ({:.0f}s)".format(self.build_timeout))

    def _collect(self, call, ref):
        ray = self.ray
        try:
            value = ray.get(ref)
        except (ray.exceptions.RuntimeEnvSetupError, ray.exceptions.RayActorError,
                ray.exceptions.ActorUnavailableError) as exc:
            slot = call["slot"]
            self._finish(call, {"error": {"kind": self._kind(exc), "message": str(exc)}})
            self._retire(slot)
            return
        except ray.exceptions.TaskCancelledError:
            return  # answered when it was cancelled
        except Exception as exc:
            self._finish(call, {"error": {"kind": "actor_died", "message": _describe(exc)}})
            self._retire(call["slot"])
            return
        self._finish(call, {"stdout": value.get("stdout", ""), "exit_code": value.get("exit_code", 1),
                            "stderr": value.get("stderr", ""), "peak_rss": value.get("peak_rss")})

    def close(self):
        self.closed = True
        with self.lock:
            for pool in self.pools.values():
                for slot in pool:
                    try:
                        self.ray.kill(slot["actor"], no_restart=True)
                    except Exception:
                        pass
            self.pools.clear()


def main():
    channel_in = os.fdopen(os.dup(0), "rb")
    channel = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.close(null)
    hello = json.loads(channel_in.readline() or b"{}")
    if not os.environ.get("RAY_AUTH_MODE") and (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")):
        # A token was given: the cluster uses token authentication.
        os.environ["RAY_AUTH_MODE"] = "token"
    try:
        import ray
    except Exception as exc:
        _send(channel, {"type": "error", "kind": "no_ray", "message": _describe(exc)})
        return 1
    try:
        # Never start a private cluster: the configured one, else RAY_ADDRESS, else the
        # cluster already running on this machine.
        address = hello.get("address") or os.environ.get("RAY_ADDRESS") or "auto"
        ray.init(address=address, logging_level="ERROR", log_to_driver=False,
                 namespace="agenthub", configure_logging=True)
    except Exception as exc:
        _send(channel, {"type": "error", "kind": "unreachable", "message": _describe(exc)})
        return 1
    driver = Driver(ray, channel, hello)
    _send(channel, {"type": "ready", "ray_version": ray.__version__, "python": sys.version.split()[0],
                    "nodes": driver._nodes(), "address": ray.get_runtime_context().gcs_address})
    waiter = threading.Thread(target=driver.wait_loop, name="agenthub-ray-wait", daemon=True)
    waiter.start()
    try:
        for line in channel_in:
            try:
                message = json.loads(line)
            except Exception:
                continue
            if isinstance(message, dict):
                driver.handle(message)
    finally:
        driver.close()
        try:
            ray.shutdown()
        except Exception:
            traceback.print_exc()
    return 0


if __name__ == "__main__":
    sys.exit(main())
