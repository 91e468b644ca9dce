"""The Phase-1 interface document's classes, examples and error taxonomy."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import agenthub
from agenthub import errors
from agenthub.runtime.agent_runtime import AgentRuntime
from agenthub.runtime.environment_manager import EnvironmentManager
from agenthub.runtime.process_manager import ProcessManager

from conftest import EXAMPLE, run_python

CODING_YAML = """\
name: "coding-agent"
version: "1.0.0"
description: "Writes code (a stand-in for agentplug/coding-agent)"
author: "agenthub tests"
interface:
  methods:
    generate_code:
      description: "Generates code"
      parameters:
        prompt: {type: "string", required: true}
    explain_code:
      description: "Explains code"
      parameters:
        code: {type: "string", required: true}
"""

CODING_PY = """\
import json, sys
request = json.loads(sys.argv[1])
prompt = request["parameters"].get("prompt", "")
print(json.dumps({"result": "def hello():\\n    # " + prompt + "\\n    print('hello world')"}))
"""


def test_the_documents_usage_examples_run_as_written(tmp_path: Path) -> None:
    """The three usage examples, verbatim but for the prints, with ~ a fresh home that holds
    agentplug/coding-agent where the original installs it."""
    user = tmp_path / "user"
    agent = user / ".agenthub" / "agents" / "agentplug" / "coding-agent"
    agent.mkdir(parents=True)
    (agent / "agent.yaml").write_text(CODING_YAML)
    (agent / "agent.py").write_text(CODING_PY)
    env = {"HOME": str(user)}
    env.pop("AGENTHUB_HOME", None)
    code = '''
        import os
        os.environ.pop("AGENTHUB_HOME", None)
        from agenthub.runtime.process_manager import ProcessManager

        # Create process manager
        pm = ProcessManager()

        # Execute agent method
        result = pm.execute_agent(
            agent_path="~/.agenthub/agents/agentplug/coding-agent",
            method="generate_code",
            parameters={"prompt": "Create a hello world function"}
        )

        if "result" in result:
            print(f"Generated code: {result['result']}")
        else:
            print(f"Error: {result['error']}")

        # Cleanup
        pm.cleanup_processes()

        from agenthub.runtime.environment_manager import EnvironmentManager

        # Create environment manager
        em = EnvironmentManager()

        # Create virtual environment
        venv_path = em.create_environment("~/.agenthub/agents/agentplug/coding-agent")
        print("venv", venv_path)

        # Install dependencies (none from an index here: a local project)
        em.install_dependencies(venv_path, [os.environ["LOCAL_REQ"]])

        # Get Python executable
        python_path = em.get_python_executable(venv_path)
        print("python", python_path)

        # Get environment variables
        env_vars = em.activate_environment(venv_path)
        print("VIRTUAL_ENV", env_vars["VIRTUAL_ENV"])

        from agenthub.runtime.agent_runtime import AgentRuntime

        # Create agent runtime
        ar = AgentRuntime()

        # Load agent manifest
        manifest = ar.load_agent_manifest("~/.agenthub/agents/agentplug/coding-agent")

        # Validate method
        if ar.validate_method("~/.agenthub/agents/agentplug/coding-agent", "generate_code"):
            # Execute agent method
            result = ar.execute_agent(
                agent_path="~/.agenthub/agents/agentplug/coding-agent",
                method="generate_code",
                parameters={"prompt": "Create a neural network class"}
            )

            if "result" in result:
                print(f"Generated code: {result['result']}")
            else:
                print(f"Execution error: {result['error']}")

        # Get agent info
        info = ar.get_agent_info("~/.agenthub/agents/agentplug/coding-agent")
        print(f"Agent: {info['name']}, Version: {info['version']}")
    '''
    local = tmp_path / "localpkg"
    local.mkdir()
    (local / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
    )
    (local / "backend.py").write_text(_MINIMAL_BACKEND)
    env["LOCAL_REQ"] = f"localpkg @ file://{local}"
    done = run_python(code, env, timeout=300)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Generated code: def hello():\n    # Create a hello world function" in out
    assert "# Create a neural network class" in out
    venv = agent / ".venv"
    assert f"venv {venv}" in out
    assert f"python {venv}/bin/python" in out
    assert f"VIRTUAL_ENV {venv}" in out
    assert "Agent: coding-agent, Version: 1.0.0" in out
    assert list((venv / "lib").glob("python3*/site-packages/localpkg*")), "install_dependencies installed nothing"


# A PEP 517 backend with no dependencies: a wheel holding one module, built offline.
_MINIMAL_BACKEND = '''
import base64, hashlib, os, zipfile

NAME, VERSION = "localpkg", "1.0"

def _record_line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name = f"{NAME}-{VERSION}-py3-none-any.whl"
    files = {
        "localpkg.py": b"VALUE = 42\\n",
        f"{NAME}-{VERSION}.dist-info/METADATA": f"Metadata-Version: 2.1\\nName: {NAME}\\nVersion: {VERSION}\\n".encode(),
        f"{NAME}-{VERSION}.dist-info/WHEEL": b"Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
    }
    record = [_record_line(p, d) for p, d in files.items()] + [f"{NAME}-{VERSION}.dist-info/RECORD,,"]
    files[f"{NAME}-{VERSION}.dist-info/RECORD"] = ("\\n".join(record) + "\\n").encode()
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return name

def get_requires_for_build_wheel(config_settings=None):
    return []
'''


def test_process_manager_raises_value_error_for_invalid_arguments(home: Path, hello: Path) -> None:
    pm = ProcessManager(home=home)
    for bad in ("", None, 3):
        with pytest.raises(ValueError):
            pm.execute_agent(bad, "greet", {"name": "x"})  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        pm.execute_agent(str(hello), "", {})
    with pytest.raises(ValueError):
        pm.execute_agent(str(hello), "greet", ["not", "a", "dict"])  # type: ignore[arg-type]
    with pytest.raises(ValueError) as missing:
        pm.execute_agent(str(hello / "nope"), "greet", {"name": "x"})
    assert isinstance(missing.value, errors.AgentNotFoundError)
    with pytest.raises(ValueError) as no_method:
        pm.execute_agent(str(hello), "fly", {})
    assert isinstance(no_method.value, errors.MethodNotFoundError)
    assert "greet" in str(no_method.value)
    assert pm.execute_agent(str(hello), "greet", {"name": "Ada"})["result"] == "Hello, Ada."
    assert pm.is_process_running(os.getpid()) is True
    ended = subprocess.Popen(["true"])
    ended.wait()
    assert pm.is_process_running(ended.pid) is False
    assert pm.is_process_running(-1) is False
    assert pm.cleanup_processes() == 0


def test_every_error_type_is_raised_or_returned_where_the_document_says(home: Path, faults: Path, tmp_path: Path) -> None:
    ar = AgentRuntime(agenthub.RuntimeConfig(max_execution_time=2, max_memory_usage=64), home=home)
    # Raised: the caller's mistakes and setup.
    with pytest.raises(FileNotFoundError) as not_found:
        ar.load_agent_manifest(str(tmp_path / "missing"))
    assert type(not_found.value) is errors.AgentNotFoundError
    assert not_found.value.error_type == "AgentNotFoundError" and not_found.value.suggestion
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "agent.yaml").write_text("name: [unclosed\n")
    (broken / "agent.py").write_text("")
    with pytest.raises(ValueError) as invalid:
        ar.load_agent_manifest(str(broken))
    assert type(invalid.value) is errors.InvalidManifestError
    with pytest.raises(ValueError) as no_method:
        ar.execute_agent(str(faults), "nonexistent_method", {})
    assert type(no_method.value) is errors.MethodNotFoundError
    assert "Available methods: echo, boom" in no_method.value.suggestion
    with pytest.raises(ValueError) as bad_params:
        ar.execute_agent(str(faults), "echo", {"value": "not an integer"})
    assert type(bad_params.value) is errors.InvalidParametersError
    with pytest.raises(RuntimeError) as env_error:
        ar.environment_manager.create_environment(str(tmp_path / "not-there"))
    assert isinstance(env_error.value, errors.EnvironmentError)
    venv = ar.environment_manager.create_environment(str(faults))
    with pytest.raises(RuntimeError) as install_error:
        ar.environment_manager.install_dependencies(venv, [f"nothing-here @ file://{tmp_path}/nothing-here"])
    assert type(install_error.value) is errors.EnvironmentError
    # Returned: what went wrong in the run, in the document's error response format.
    returned = {
        "boom": ("AgentError", {}),
        "garbage": ("ProtocolError", {}),
        "nap": ("TimeoutError", {"seconds": 30}),
        "hog": ("ResourceLimitError", {"mib": 256}),
        "die": ("ExecutionError", {}),
        "crash": ("ExecutionError", {}),
    }
    for method, (error_type, params) in returned.items():
        response = ar.execute_agent(str(faults), method, params)
        assert response.get("error_type") == error_type, (method, response)
        assert response["error"] and "execution_time" in response, response
        exc = errors.from_response(response)
        assert type(exc).__name__ == error_type and isinstance(exc, errors.ExecutionError)
    assert "crashed, as asked" in ar.execute_agent(str(faults), "crash", {}).get("stderr", "")
    assert ar.execute_agent(str(faults), "echo", {"value": 7})["result"] == {"value": 7, "label": "none"}


def test_agent_runtime_reads_manifests_and_validates_methods(home: Path, hello: Path) -> None:
    ar = AgentRuntime(home=home)
    assert isinstance(ar.process_manager, ProcessManager)
    assert isinstance(ar.environment_manager, EnvironmentManager)
    manifest = ar.load_agent_manifest(str(hello))
    assert manifest["name"] == "hello" and list(manifest["methods"]) == ["greet", "word_count", "add"]
    assert ar.validate_method(str(hello), "greet") is True
    assert ar.validate_method(str(hello), "fly") is False
    info = ar.get_agent_info(str(hello))
    assert (info["name"], info["version"]) == ("hello", "1.0.0")
    assert "greet" in info["methods"]


def test_the_config_classes_have_the_documents_defaults_and_apply_what_is_set(home: Path, faults: Path) -> None:
    rc = agenthub.RuntimeConfig()
    assert (rc.max_execution_time, rc.max_memory_usage, rc.subprocess_timeout, rc.cleanup_interval) == (30, 1024, 5, 60)
    assert (rc.log_level, rc.use_uv) == ("INFO", True)
    ec = agenthub.EnvironmentConfig()
    assert (ec.dependency_cache, ec.auto_cleanup, ec.max_venv_size) == (True, True, 500)
    assert rc.settings() == {} and ec.settings() == {}
    with pytest.raises(AttributeError):
        rc.max_execution_tim = 3  # type: ignore[attr-defined]
    rc.max_execution_time = 1
    pm = ProcessManager(rc, home=home)
    response = pm.execute_agent(str(faults), "nap", {"seconds": 20})
    assert response["error_type"] == "TimeoutError", response
    assert response["execution_time"] < 10
    with pytest.raises(ValueError):
        ProcessManager(agenthub.RuntimeConfig(max_execution_time=-1), home=home)


def test_environment_manager_creates_once_and_never_replaces_what_it_did_not_make(home: Path, hello: Path) -> None:
    em = EnvironmentManager(home=home)
    venv = em.create_environment(str(hello))
    assert venv == str(hello / ".venv") and os.path.isfile(em.get_python_executable(venv))
    assert em.create_environment(str(hello)) == venv
    env = em.activate_environment(venv)
    assert env["VIRTUAL_ENV"] == venv and env["PATH"].startswith(f"{venv}/bin")
    assert "PYTHONHOME" not in env
    other = hello.parent / "other"
    shutil.copytree(EXAMPLE, other, ignore=shutil.ignore_patterns(".venv*", "__pycache__"))
    (other / ".venv").mkdir()
    (other / ".venv" / "precious.txt").write_text("mine")
    with pytest.raises(RuntimeError):
        em.create_environment(str(other))
    assert (other / ".venv" / "precious.txt").read_text() == "mine"
    with pytest.raises(RuntimeError):
        em.install_dependencies(str(other / "no-venv"), ["x"])
