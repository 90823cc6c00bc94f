"""Small, safe built-in tools: workspace files, HTTP fetch, an opt-in shell, and a trash.

::

    from tether.toolkit import http_fetch_tool, workspace_tools

    tools = [
        *workspace_tools(Path("workspace")),
        http_fetch_tool(allowed_hosts=["api.github.com", "*.wikipedia.org"]),
    ]
"""

from tether.toolkit.files import workspace_tools
from tether.toolkit.http import MAX_REDIRECTS, http_fetch_tool
from tether.toolkit.shell import PASSED_ENV, shell_tool
from tether.toolkit.trash import TRASH_DIRNAME, Trash, TrashError, TrashItem, TrashKind

__all__ = [
    "MAX_REDIRECTS",
    "PASSED_ENV",
    "TRASH_DIRNAME",
    "Trash",
    "TrashError",
    "TrashItem",
    "TrashKind",
    "http_fetch_tool",
    "shell_tool",
    "workspace_tools",
]
