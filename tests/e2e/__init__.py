"""End to end: the demo, run as `make demo` runs it."""
