"""Load an agent from a reference: ``package.module:attr`` or ``path/to/file.py:attr``."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from tether.errors import AgentLoadError
from tether.run import AgentSpec

__all__ = ["load_agent"]


def load_agent(reference: str) -> AgentSpec[Any]:
    """Import the agent (a :class:`~tether.Agent`) that ``reference`` names.

    Args:
        reference: ``module:attr`` (importable module) or ``file.py:attr`` (a path,
            relative to the current directory or absolute). ``attr`` may be dotted.

    Raises:
        AgentLoadError: The reference is malformed, the module or file cannot be
            imported, the attribute is missing, or it is not an ``Agent``.
    """
    source, sep, attr = reference.rpartition(":")
    if not sep or not source or not attr:
        raise AgentLoadError(
            f"agent reference {reference!r} must look like 'module:attr' or 'path/file.py:attr'"
        )
    module = _import_file(source) if source.endswith(".py") else _import_module(source)
    value: Any = module
    for part in attr.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise AgentLoadError(f"{source!r} has no attribute {attr!r}") from None
    if not isinstance(value, AgentSpec):
        raise AgentLoadError(f"{reference!r} is a {type(value).__name__}, not a tether Agent")
    return value


def _import_module(name: str) -> Any:
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise AgentLoadError(f"cannot import module {name!r}: {exc}") from exc
    except Exception as exc:
        raise AgentLoadError(f"importing {name!r} failed: {type(exc).__name__}: {exc}") from exc


def _import_file(path_text: str) -> Any:
    path = Path(path_text).resolve()
    if not path.is_file():
        raise AgentLoadError(f"no such file: {path_text}")
    module_name = f"_tether_agent_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise AgentLoadError(f"cannot load {path_text} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise AgentLoadError(f"running {path_text} failed: {type(exc).__name__}: {exc}") from exc
    return module
