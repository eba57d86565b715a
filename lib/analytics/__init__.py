"""What is computed from the bars: prices adjusted on read, trends, indicators, anomalies, forecasts."""
