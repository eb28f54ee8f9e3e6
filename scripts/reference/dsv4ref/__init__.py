"""dsv4ref: reference-oracle fixture generator for dsv4 (tiny DeepSeek-V4 models)."""
