"""Fixtures of the end-to-end tests: daemon processes (killed at the end, output printed) and the
live-sample feeder."""

from tests.e2e.daemon_process import canary_api, feeder, processes

__all__ = ["canary_api", "feeder", "processes"]
