"""The public test kit: fake models, a fake clock and tool fault injection.

Everything here is documented, stable API, meant for your own tests::

    from tether.testing import ScriptedModel, call

    model = ScriptedModel([call("add", {"a": 1, "b": 2}), "The sum is 3."])
"""

from tether.testing.clock import FakeClock
from tether.testing.faults import FaultPlan
from tether.testing.models import FunctionModel, ModelRequest, ScriptedModel, ScriptItem, call

__all__ = [
    "FakeClock",
    "FaultPlan",
    "FunctionModel",
    "ModelRequest",
    "ScriptItem",
    "ScriptedModel",
    "call",
]
