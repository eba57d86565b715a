"""The stock-market workspace's code, as packages by part; each imports only from the floors below it.

    core          errors, redaction, the API key, trading days, shared names, the workspace root
    simulator     the bundled Massive (formerly Polygon.io) simulator: REST and the websocket feed   (python -m lib.simulator)
    settings      a run's parameters, validated once; the quality thresholds; the command-line reader
    storage       Spark session, Iceberg catalog and tables, monthly arrays, write-audit-publish, the JVM-free reader
    ingestion     API clients, rate limit, the fan-out, the real-time stream
    quality       the checks and the gate
    analytics     prices and adjustments, trends, indicators, anomalies, forecasts
    presentation  figures, notebook display, run reports
    running       notebook bootstrap, steps (one road per step), the shared kernel, the batch runner
    dashboard, glue                                       apps of their own (python -m lib.dashboard, python -m lib.glue)
    run, prices, stream, wap                              the commands that keep their names (python -m lib.run, ...)
"""
