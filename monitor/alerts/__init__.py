"""Alert rules: parsed from the config, evaluated on the hub's metrics and log events."""
