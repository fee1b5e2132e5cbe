"""Throughput harnesses (what ``scripts/bench_*.py`` run): speed and memory, measured as ratios
in one run, never asserted in unit tests.

* :mod:`.envs`: episodes/s and steps/s of every env with the oracle, next to CartPole; RSS
  growth; snapshot cost (``scripts/bench_envs.py``).
* :mod:`.generation`: generated tokens/s of the backends, sequential and batched
  (``scripts/bench_generation.py``).
* :mod:`.leaderboard`: the whole ``tooluse-v0`` suite and the board build, timed
  (``scripts/bench_leaderboard.py``).
* :mod:`.knowledge`: the knowledge graph at 10^5 nodes: write rates (batched, single), query
  rates (related problems, lineage), load time and file size (``scripts/bench_knowledge.py``).
* :mod:`.mfu`: model FLOPs utilisation of SFT on a ~125M-parameter model (``scripts/
  bench_mfu.py``; on a GPU in bf16, ``--size tiny`` on a CPU).
"""
