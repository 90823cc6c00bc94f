"""A weather desk on the local model: offline, no API key, journaled in SQLite.

Run it with ``tether run examples/weather.py:agent "What is the weather in Paris?"``
(``make run`` does). The model is SmolLM2-135M-Instruct running in process: small enough
for two CPU cores, and small enough to misbehave. It may call the tool with a city it
made up, call it again and again, or never answer. tether keeps every such run bounded:
bad arguments go back to the model as errors, repeated calls are answered from the
journal and stopped after ``max_repeats``, and the run ends within ``max_steps`` and
``max_duration`` with a typed status either way.
"""

from datetime import timedelta

from tether import Agent, RunLimits, ToolError, tool
from tether.models import ModelSettings

FORECASTS = {
    "paris": "Paris: sunny, 21 °C, light wind from the west.",
    "london": "London: light rain, 14 °C, wind from the south-west.",
    "tokyo": "Tokyo: cloudy, 18 °C, calm.",
    "new york": "New York: clear, 24 °C, humid.",
}


@tool(risk="read")
def get_forecast(city: str) -> str:
    """Get today's weather forecast for a city.

    Args:
        city: The city name, for example "Paris".
    """
    forecast = FORECASTS.get(city.strip().lower())
    if forecast is None:
        known = ", ".join(name.title() for name in FORECASTS)
        raise ToolError(f"no forecast for {city!r}; cities with a forecast: {known}")
    return forecast


agent = Agent(
    name="weather",
    model="local",
    instructions=(
        "You are a weather assistant. To learn the weather, call get_forecast once with "
        "the city name. When you have the forecast, answer the user in one short sentence "
        "and do not call any tool again."
    ),
    tools=[get_forecast],
    model_settings=ModelSettings(max_output_tokens=96),
    limits=RunLimits(
        max_steps=8,
        max_repeats=1,
        max_duration=timedelta(minutes=3),
        max_tokens=20_000,
    ),
)
