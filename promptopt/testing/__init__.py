"""Test and benchmark utilities that ship with the package, as ``optuna.testing`` does.

- :mod:`promptopt.testing.search_fakes`: a fake "skilled" model whose accuracy depends on
  the instruction (and that plays the proposer), so a search has something to find;
- :mod:`promptopt.testing.space_fakes`: a fake whose accuracy depends on several parts of
  the prompt (reasoning, demos, answer format, instruction), for searches over a space;
- :mod:`promptopt.testing.dspy_fakes`: a scripted model that speaks DSPy's ChatAdapter format;
- :mod:`promptopt.testing.openai_server`: a real OpenAI-compatible HTTP server on loopback
  that injects faults.

Nothing here is imported by ``import promptopt``; the tests and the benchmarks import it.
"""
