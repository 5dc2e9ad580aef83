"""Integrations of longattn with other libraries (transformers: `integrations.transformers`)."""
