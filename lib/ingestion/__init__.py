"""Bars in: the Massive (formerly Polygon.io) clients, the rate limit, the fan-out over Spark, the real-time stream."""
