"""Command-line entry points (``python -m attn2scale <command>``)."""
