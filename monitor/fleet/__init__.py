"""Many hosts meeting in Redis Streams: agents publish there, dashboards read from there."""
