"""Loopback fakes of the outside world (Yahoo, Slack, Discord) for tests, demos and benchmarks."""
