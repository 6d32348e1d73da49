"""delegate-mcp: an MCP server that routes each task to the right specialist model."""

__version__ = "0.1.0"
