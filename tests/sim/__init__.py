"""A scriptable provider simulator for tests (stdlib only): OpenAI, Anthropic and Gemini wire formats."""

from tests.sim.core import WIRE_NAMES, ProviderSimulator
from tests.sim.script import Behaviour

__all__ = ["WIRE_NAMES", "Behaviour", "ProviderSimulator"]
