"""``promptopt.optimize(task, model=..., policy=..., max_calls=...)``: one call from data to a
prompt you can run.

It prepares and runs a search (:func:`promptopt.controller.prepare_search`, on a
:class:`~promptopt.session.Session`: the same store, budgets, resume, progress display and
report as ``promptopt search``) and returns the winner as the very object
:func:`promptopt.load` gives for an exported prompt, so ``best.run(field=...)`` answers a
new question at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from promptopt.backends import Backend, make_backend
from promptopt.export import LoadedPrompt


def optimize(
    task: Any,
    *,
    model: str | Backend | None = None,
    policy: str = "ape",
    max_calls: int | None = None,
    final_in_budget: bool = False,
    budget: str = "light",
    metric: Any = None,
    instruction: str | None = None,
    db: Any = None,
    resume: str | None = None,
    progress: bool | Callable[[Any], None] = True,
    seed: int = 0,
    proposer: str | Backend | None = None,
    data_dir: str | Path | None = None,
    policy_options: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> LoadedPrompt:
    """Search for the best prompt of ``task`` and return it, ready to run.

    ``task`` is a :class:`~promptopt.tasks.Task` (e.g. from ``Task.from_records``) or a
    task name; ``model`` a model spec (``openai/gpt-4o-mini``, ``fake``, a local model)
    or a :class:`~promptopt.backends.Backend`; ``policy`` any search policy; ``max_calls``
    the limit on the search's model calls (with ``final_in_budget``, on the search and its
    final full-dev scoring together, as ``promptopt search --final-in-budget``); ``budget`` the size preset (light, medium,
    heavy); ``metric`` overrides the task's metric (any form
    :func:`promptopt.metrics.resolve_metric` takes). ``resume=RUN_ID`` continues an
    interrupted run (pass the same task; a metric that is user code must be the same).
    Other keyword arguments override :class:`~promptopt.controller.SearchConfig` fields
    (``dev_size``, ``test_size``, ``rounds``, ...). ``policy_options`` are the policy's own
    options (e.g. ``{"minibatch": 8}`` for reflect; see its ``Options``), checked against
    them; they may also be given as keywords of their own (``minibatch=8``). Results go to
    ``db`` (default ``$PROMPTOPT_DB``, else ``./promptopt.db``).
    """
    from promptopt.budget import Budget
    from promptopt.controller import SearchConfig, prepare_search
    from promptopt.evaluation import make_candidate
    from promptopt.export import build_document, load_document
    from promptopt.progress import SearchDisplay
    from promptopt.session import Session
    from promptopt.tasks import Task, get_task

    task_obj = task if isinstance(task, Task) else get_task(str(task), data_dir)
    if metric is not None:
        task_obj = task_obj.with_metric(metric)
    session, owns_session = Session.of(db)
    try:
        if model is None:
            from promptopt.models import DEFAULT_MODEL

            stored = session.store.get_run(resume).config.get("model") if resume is not None else None
            model = stored if isinstance(stored, str) else DEFAULT_MODEL
        model_name = model.model_id if isinstance(model, Backend) else str(model)
        # One backend for the search and for the returned prompt's run(): a local model is
        # loaded once, and run() needs no model spec (a stored model id such as
        # "local/<name>:int8" is not one).
        backend = (
            model
            if isinstance(model, Backend)
            else make_backend(str(model), batch_size=int(overrides.get("batch_size", 16)))
        )
        proposer_backend = proposer if isinstance(proposer, Backend) else None
        if resume is not None:
            prepared = prepare_search(db=session, resume=resume, task=task_obj, backend=backend,
                                      proposer_backend=proposer_backend)  # fmt: skip
        else:
            config = SearchConfig.from_preset(
                budget, task=task_obj.name, model=model_name, base=make_candidate(task_obj, instruction=instruction),
                policy=policy, budget=Budget(max_calls=max_calls, covers_final=final_in_budget), seed=seed,
                proposer_model=proposer if isinstance(proposer, str) else None,
                data_dir=str(data_dir) if data_dir else None, policy_options=policy_options, **overrides,
            )  # fmt: skip
            prepared = prepare_search(config, db=session, task=task_obj, backend=backend,
                                      proposer_backend=proposer_backend)  # fmt: skip
        with SearchDisplay(enabled=progress is True) as display:
            result = prepared.run(progress=progress if callable(progress) else display.update)
        document = build_document(session.store, result.run_id, task=task_obj)
        loaded = load_document(document, where=f"run {result.run_id}")
    finally:
        if owns_session:
            session.close()
    import dataclasses

    return dataclasses.replace(loaded, backend=backend)
