"""The daemon: scheduler, HTTP app, state persistence and logging around the pure core."""
