"""Contract suites that every implementation of a core interface must pass."""
