"""The provider simulator (kept at this path for existing imports; the code lives in tests/sim/)."""

from tests.sim import WIRE_NAMES, Behaviour, ProviderSimulator

__all__ = ["WIRE_NAMES", "Behaviour", "ProviderSimulator"]
