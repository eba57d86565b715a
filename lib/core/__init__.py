"""The vocabulary every part shares (errors, redaction of the key, the key itself, trading days, metric names, the
workspace root); it imports nothing of the project above it."""
