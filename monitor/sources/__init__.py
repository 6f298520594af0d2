"""Sources: producers of events (log files, the journal, host metrics), run under supervision."""
