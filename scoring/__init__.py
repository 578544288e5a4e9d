"""Metrics, submission validation and the sandbox that runs grading. No web, database or queue code."""
