"""What the three Phase-1 classes share: their runtime and how arguments are checked."""

from __future__ import annotations

import json
import os
from typing import Any

from .. import _session
from .._agent import RAISED
from ..config import EnvironmentConfig, RuntimeConfig
from ..errors import from_response


def session(
    home: str | os.PathLike[str] | None,
    runtime_config: RuntimeConfig | None,
    environment_config: EnvironmentConfig | None,
) -> _session.Session:
    """The shared runtime for these settings. Phase-1 calls name agents by path: nothing is
    installed on their behalf."""
    settings: dict[str, Any] = {}
    if runtime_config is not None:
        settings.update(runtime_config.settings())
    if environment_config is not None:
        settings.update(environment_config.settings())
    return _session.session(home, settings, False)


def agent_path(value: Any) -> str:
    """An agent directory as given (``~`` expanded); ``ValueError`` for what cannot be one."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"agent_path must be a path to an agent directory, not {value!r}")
    return os.path.expanduser(value)


def method_name(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"method must be a method name, not {value!r}")
    return value


def parameters_json(value: Any) -> str:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ValueError(f"parameters must be a dict, not {type(value).__name__}")
    try:
        return json.dumps(value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"parameters must be JSON values: {e}") from None


def finish(text: str) -> dict[str, Any]:
    """The response dict; errors of the call itself raised (see ``agenthub._agent.RAISED``)."""
    response = json.loads(text)
    if "error" in response and response.get("error_type") in RAISED:
        raise from_response(response)
    return response
