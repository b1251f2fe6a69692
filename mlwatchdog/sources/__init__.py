"""Sources: where samples and metrics come from (files, SQL, the KServe sink, Prometheus)."""
