"""Benchmarks: fixed suites, runners, statistics and the leaderboard."""
