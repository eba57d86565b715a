"""Checking the data before it is published: the checks and the gate."""
