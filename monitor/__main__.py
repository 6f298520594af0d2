"""`python -m monitor` runs the same command as `sse-monitor`."""

from monitor.cli import main

if __name__ == "__main__":
    main()
