"""The built-in specialist files (*.md), read with importlib.resources."""
