"""Vendored prometheus-operator schemas (ServiceMonitor, PrometheusRule); see vendor.py."""
