"""Stored runs copied out to the tools a lab already uses (today: MLflow). The store stays the source of truth:
an export only reads it, through its functions."""
