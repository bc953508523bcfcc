"""Data: CoIN JSON loading and validation, CoIN-Synth, collation."""
