"""Evaluation: per-sample scorers (truth alignment) and the LLM judge (reasoning capability)."""
