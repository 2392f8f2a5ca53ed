"""Engine-neutral connectors: one module per external system (sources, writers)."""
