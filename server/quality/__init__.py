"""Answers measured: deterministic checks, a blind two-order judge, tasks files, statistics and recommendations."""
