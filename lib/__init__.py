"""Shared Spark code of the stock-market workspace: client, simulator, ingestion, rollup, quality, trends."""
