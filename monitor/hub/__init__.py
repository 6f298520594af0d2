"""The hub: where sources publish and clients read. Its interface (typing Protocols), event
types and ids, the SSE wire format, and the in-memory hub (a bounded ring and its readers)."""
