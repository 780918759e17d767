"""Measuring every model side by side on repeated splits of one cover source (entry point ``evaluate``)."""
