"""Real servers (PostgreSQL, Prometheus) that integration tests start on loopback."""
