"""The words every part shares: the metrics of a daily bar and the ways prices are adjusted on read."""

# The metrics of a daily bar, in the order the monthly arrays list them (monthly_stock_prices.metric_name).
METRICS = ("open", "high", "low", "close", "volume", "vwap", "transactions")

# How lib.analytics.prices adjusts the stored as-traded bars: as traded, split-adjusted, and total return.
ADJUSTMENTS = ("raw", "split", "total_return")
