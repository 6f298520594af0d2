"""`sse-monitor tail`: follows a server's logs over its SSE stream, from anywhere."""
