"""sse-monitor: tail logs and sample host metrics, streamed as Server-Sent Events."""

__version__ = "0.1.0"
