"""compliance: re-evaluate a fine-tuned language model against its base, and prove it."""

__version__ = "0.1.0"
