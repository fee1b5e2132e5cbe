"""Benchmarks: fixed suites, the parallel resumable runner, statistics, the leaderboard, and
the throughput harnesses (``perf/``)."""
