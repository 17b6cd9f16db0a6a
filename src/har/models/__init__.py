"""Model architectures, the registry of named models, and checkpoint readers."""
