"""The engine: one training loop, batched evaluation, and the run that chains the stages."""
