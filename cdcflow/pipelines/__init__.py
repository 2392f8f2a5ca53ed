"""Pipeline files: the YAML model (config), the component registry and the engine-neutral plan."""
