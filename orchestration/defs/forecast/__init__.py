"""The forecast from the open funnel: live forecast, backtest, and kept history (see docs/forecast.md)."""
