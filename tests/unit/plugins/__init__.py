"""Importable steps for the ``type: python`` tests (named by import path in pipeline YAML)."""
