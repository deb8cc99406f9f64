"""Helpers several test modules share (not tests themselves: pytest collects only test_*.py)."""
