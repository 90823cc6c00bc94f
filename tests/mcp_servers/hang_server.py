"""A broken MCP server on stdio, for the failure tests of tether.tools.mcp.

Usage: ``python hang_server.py MODE PIDFILE``. It appends its pid to PIDFILE (one line
per start) and exits when its stdin closes.

- ``silent``: never answers anything, not even the handshake.
- ``hang``: answers the handshake and ``tools/list``, never a ``tools/call``.
- ``meta``: answers each ``tools/call`` with the request's ``_meta`` as JSON text (to
  check what the client propagates, such as ``traceparent``).

Its tools test name mapping and schemas: ``wait``, a name with ``.`` and ``/``, a
100-character name, and ``broken`` (an invalid input schema).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

ANY_OBJECT = {"type": "object", "properties": {}}
TOOLS = [
    {
        "name": "wait",
        "description": "Waits forever.",
        "inputSchema": ANY_OBJECT,
        "annotations": {"readOnlyHint": True},
    },
    {"name": "files.read/all", "inputSchema": ANY_OBJECT},
    {"name": "x" * 100, "inputSchema": ANY_OBJECT},
    {"name": "broken", "inputSchema": {"type": "object", "properties": {"n": {"type": 5}}}},
]


def answer(request: dict[str, Any], mode: str) -> dict[str, Any] | None:
    method = request.get("method")
    if method == "initialize":
        result = {
            "protocolVersion": request["params"]["protocolVersion"],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "hang", "version": "1"},
        }
    elif method == "tools/list":
        result = {"tools": TOOLS}
    elif method == "tools/call":
        if mode != "meta":
            return None
        meta = json.dumps(request["params"].get("_meta", {}))
        result = {"content": [{"type": "text", "text": meta}], "isError": False}
    else:
        error = {"code": -32601, "message": f"method not found: {method}"}
        return {"jsonrpc": "2.0", "id": request["id"], "error": error}
    return {"jsonrpc": "2.0", "id": request["id"], "result": result}


def main() -> None:
    mode, pidfile = sys.argv[1], sys.argv[2]
    with open(pidfile, "a") as out:
        out.write(f"{os.getpid()}\n")
    for line in sys.stdin:
        request = json.loads(line)
        if mode == "silent" or "id" not in request:
            continue
        response = answer(request, mode)
        if response is not None:
            sys.stdout.write(json.dumps(response) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
