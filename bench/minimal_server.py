"""The cold-start baseline: a minimal MCPServer with one trivial tool, served over stdio."""

from mcp.server.mcpserver import MCPServer

server = MCPServer("minimal", log_level="WARNING")


@server.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


if __name__ == "__main__":
    server.run()
