"""Pictures: label colouring and overlays (``overlay``), and the paper's attention
figure (``attention``)."""

from .overlay import colorize, overlay

__all__ = ["colorize", "overlay"]
