"""A run's parameters, read and validated once: the run config, the quality thresholds, the command-line reader."""
