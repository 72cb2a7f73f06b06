"""LLM-as-judge (filled in below)."""
