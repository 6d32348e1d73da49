"""SmolLM2-135M-Instruct for delegate-mcp's offline model: this folder holds the GGUF file, nothing to import."""
