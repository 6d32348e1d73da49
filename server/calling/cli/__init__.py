"""Coding-agent CLIs (Claude Code, Codex, Gemini CLI, opencode, any other) as models of a specialist's chain."""
