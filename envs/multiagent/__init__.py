"""Multi-agent envs: several LLM roles in one episode, as PettingZoo envs.

A registry entry with ``capabilities.api: pettingzoo-aec`` (roles act in turn) or
``pettingzoo-parallel`` (roles act at once) and ``multi_agent: true`` is made with
:func:`llm_trainer.make_multiagent` (``llm_trainer.make`` refuses it). These envs keep the
single-agent contract, per agent:

* observations and actions are text: ``UnicodeText`` spaces, observations returned as
  :class:`~llm_trainer.envs.spaces.TextObservation` (a ``numpy.str_``, which PettingZoo's
  checkers need);
* every agent's ``info`` carries ``format_ok``, ``tool_correct``, ``exec_ok``,
  ``answer_correct`` and ``success``; malformed text is an invalid action with a penalty and
  ``info["invalid_action"]``, never an exception;
* all randomness comes from the env's own ``np_random``;
* ``env.unwrapped.get_state()`` / ``set_state()`` snapshot an episode as an immutable value;
* the communication protocol (what each role observes) is declared by the env (``protocol``)
  and documented in its class docstring.

Every id passes PettingZoo's ``api_test`` and ``seed_test`` (``parallel_api_test`` and
``parallel_seed_test`` where parallel), and ``max_cycles_test`` where it takes ``max_cycles``,
in ``tests/envs/multiagent/test_conformance.py``.

This package imports PettingZoo; ``import llm_trainer`` does not import it.
"""

from llm_trainer.envs.multiagent.malt import (
    AGENTS,
    MALT_FAMILIES,
    PROTOCOL,
    MALTEnv,
    MALTEpisode,
    MALTRound,
)

__all__ = ["AGENTS", "MALT_FAMILIES", "PROTOCOL", "MALTEnv", "MALTEpisode", "MALTRound"]
