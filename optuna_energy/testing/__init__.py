"""Conformance suites a plug-in author runs on their own entries, as Optuna ships ``pytest_samplers``."""
