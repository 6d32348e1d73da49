"""The defaults of a compare run: how many calls at once, and the worst case that needs --yes."""

DEFAULT_CONCURRENCY = 4
"""Calls in flight at once: enough to finish soon, few enough to stay under most providers' rate limits."""
CONFIRM_ABOVE_USD = 1.0
"""A run whose worst case is above this needs --yes (or a --max-cost-usd below it)."""
