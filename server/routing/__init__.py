"""Routing: the router model and the embedded classifier."""
