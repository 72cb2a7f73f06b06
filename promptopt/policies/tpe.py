"""``tpe``: Bayesian optimisation of the whole prompt with Optuna's TPE sampler.

The pattern of DSPy's MIPROv2: every dimension of the search space becomes an Optuna
parameter — the instruction as an index into the pool, the rest as categorical, integer
or float parameters, conditional ones suggested only when their parent allows them. The
sampler is multivariate (``group=True`` for the conditional structure) and seeded.

Each round asks the study for ``n_proposals`` trials (the constant liar keeps a batch
diverse); the controller races them on dev. After every racing stage the candidate's
running mean is reported as an intermediate value at step = dev examples seen, and
Optuna's median pruner may stop the trial there (on top of successive halving). The
trial's value is its mean dev score where the race left it.

The study is stored in the *same database* as the run, through Optuna's RDB storage
(its tables sit beside promptopt's ``po_`` tables), named ``promptopt-<run id>``, so
``optuna-dashboard <db-url>`` shows the search while it runs. A resumed run deletes the
study of its interrupted attempt and replays it: with the same seed and the same scores
(from the response cache) the sampler makes the same choices. The storage's connection
pool is disposed when the policy is closed or dropped, so no idle connection to the
database outlives the search (SQLAlchemy engines sit in reference cycles: left to the
garbage collector, a PostgreSQL connection stays open for an unpredictable time).

Optuna logs every trial at INFO level and the search has its own progress display, so
the policy lowers Optuna's (process-wide) log level to WARNING only while it calls
Optuna, and puts back whatever level the caller had.
"""

from __future__ import annotations

import contextlib
import functools
import os
import warnings
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

from promptopt.errors import MissingDependencyError
from promptopt.policies.base import PolicySettings, SpacePolicy, register_policy
from promptopt.proposers import Proposer
from promptopt.racing import Standing
from promptopt.spaces import Dimension, Point
from promptopt.types import Candidate

STUDY_PREFIX = "promptopt-"


def _optuna() -> Any:
    try:
        import optuna
    except ImportError as e:
        raise MissingDependencyError(
            "the tpe policy needs Optuna", hint="pip install 'promptopt[search]'  (or: pip install optuna)"
        ) from e
    return optuna


def storage_url(store_url: str) -> str:
    """An SQLAlchemy URL for Optuna from a promptopt database URL (or SQLite path)."""
    if "://" in store_url:
        return store_url
    return "sqlite:///" + os.path.expanduser(store_url)


def study_name(run_id: str) -> str:
    return f"{STUDY_PREFIX}{run_id}"


def open_storage(store_url: str) -> Any:
    """Optuna's RDB storage on the promptopt database."""
    optuna = _optuna()
    url = storage_url(store_url)
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # promptopt writes to the same file from its own engine: wait for its locks.
        kwargs = {"connect_args": {"timeout": 60}}
    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)


@contextlib.contextmanager
def quiet_optuna(optuna: Any) -> Iterator[None]:
    """Optuna's log level at least WARNING inside, the caller's own level restored after."""
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(max(previous, optuna.logging.WARNING))
    try:
        yield
    finally:
        optuna.logging.set_verbosity(previous)


@register_policy("tpe")
class TPEPolicy(SpacePolicy):
    """Optuna TPE over the space, with intermediate values and a median pruner."""

    def __init__(self, base: Candidate, proposer: Proposer, settings: PolicySettings) -> None:
        super().__init__(base, proposer, settings)
        optuna = _optuna()
        self.optuna = optuna
        n = max(1, settings.n_proposals)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(
                seed=settings.seed, multivariate=True, group=True, n_startup_trials=n, constant_liar=True
            )
        # Warm-up: no pruning before n trials have finished, nor at the first stage of a
        # race (successive halving already judges that one).
        pruner = optuna.pruners.MedianPruner(n_startup_trials=n, n_warmup_steps=settings.race_start)
        name = study_name(settings.run_id or "unsaved")
        self._close: Any = None
        with quiet_optuna(optuna):
            if settings.store_url:
                storage: Any = open_storage(settings.store_url)
                self._close = weakref.finalize(self, storage.engine.dispose)
                with contextlib.suppress(KeyError):  # the study of an interrupted attempt
                    optuna.delete_study(study_name=name, storage=storage)
            else:
                storage = optuna.storages.InMemoryStorage()
            self.storage = storage
            self.study = optuna.create_study(
                study_name=name, storage=storage, sampler=sampler, pruner=pruner, direction="maximize"
            )
            self.study.set_user_attr("promptopt_run", settings.run_id)
            self.study.set_user_attr("space", self.space.name)
        self._trials: dict[str, list[Any]] = {}
        self._pruned: dict[int, int] = {}  # trial number -> step it was pruned at
        self._told: set[int] = set()
        self._pending: list[Any] = []

    def close(self) -> None:
        """End the trials the search left open, then dispose of the storage's connection
        pool (also done when the policy is dropped)."""
        self.finish_open_trials()
        if self._close is not None:
            self._close()

    def finish_open_trials(self) -> None:
        """Tell Optuna how every trial it handed out ended: one the search stopped before
        scoring (a call budget spent mid-race) is ``FAIL`` (``PRUNED`` if it was pruned), so
        no trial stays ``RUNNING`` in the study after the search."""
        running = self.optuna.trial.TrialState.RUNNING
        with quiet_optuna(self.optuna), contextlib.suppress(Exception):
            for trial in self.study.get_trials(deepcopy=False, states=(running,)):
                if trial.number in self._told:
                    continue
                self._told.add(trial.number)
                state = "PRUNED" if trial.number in self._pruned else "FAIL"
                self.study.tell(trial.number, state=getattr(self.optuna.trial.TrialState, state))

    def _suggest(self, trial: Any, dimension: Dimension) -> Any:
        if dimension.kind in ("categorical", "pool"):
            return trial.suggest_categorical(dimension.name, self.dimension_options(dimension))
        assert dimension.low is not None and dimension.high is not None
        if dimension.kind == "integer":
            return trial.suggest_int(
                dimension.name, int(dimension.low), int(dimension.high), step=int(dimension.step or 1)
            )
        if dimension.step:
            return trial.suggest_float(dimension.name, dimension.low, dimension.high, step=dimension.step)
        return trial.suggest_float(dimension.name, dimension.low, dimension.high, log=dimension.log)

    def next_points(self, n: int) -> list[Point]:
        self._pending = []
        points: list[Point] = []
        with quiet_optuna(self.optuna):
            for _ in range(n):
                trial = self.study.ask()
                points.append(self.space.sample(functools.partial(self._suggest, trial)))
                self._pending.append(trial)
        return points

    def ask(self) -> list[Any]:
        proposals = super().ask()
        # pair each trial with the candidate its point became (several trials may share one)
        for (candidate_hash, point), trial in zip(self._batch, self._pending, strict=True):
            trial.set_user_attr("candidate", candidate_hash)
            if "instruction" in point:
                trial.set_user_attr("instruction", self.pool[int(point["instruction"])])
            self._trials.setdefault(candidate_hash, []).append(trial)
        self._pending = []
        return proposals

    def should_prune(self, standing: Standing) -> bool:
        trials = [t for t in self._trials.get(standing.candidate, []) if t.number not in self._told]
        if not trials:
            return False
        prune = False
        with quiet_optuna(self.optuna):
            for trial in trials:
                trial.report(standing.mean, step=standing.n)
                if trial.number not in self._pruned and trial.should_prune():
                    self._pruned[trial.number] = standing.n
                prune = prune or trial.number in self._pruned
        return prune

    def learn(self, batch: Sequence[tuple[Point, Standing]]) -> None:
        told = self._told
        with quiet_optuna(self.optuna):
            for _, standing in batch:
                for trial in self._trials.get(standing.candidate, []):
                    if trial.number in told:
                        continue
                    told.add(trial.number)
                    trial.set_user_attr("dev_n", standing.n)
                    pruned_at = self._pruned.get(trial.number)
                    if pruned_at is not None and standing.n <= pruned_at:
                        self.study.tell(trial, state=self.optuna.trial.TrialState.PRUNED)
                    else:
                        self.study.tell(trial, self.reward(self.points.get(standing.candidate, {}), standing))

    def describe(self) -> dict[str, Any]:
        self.finish_open_trials()  # described once the search is over
        states: dict[str, int] = {}
        for trial in self.study.get_trials(deepcopy=False):
            states[trial.state.name.lower()] = states.get(trial.state.name.lower(), 0) + 1
        data = super().describe()
        data.update({"study": self.study.study_name, "trials": states})
        try:
            best = self.study.best_trial
        except ValueError:
            best = None
        if best is not None:
            data["best_trial"] = {"number": best.number, "value": best.value,
                                  "params": self.describe_point(best.params)}  # fmt: skip
        if self.settings.store_url:
            from promptopt.store.store import mask_url

            data["dashboard"] = f"optuna-dashboard {mask_url(storage_url(self.settings.store_url))}"
        return data
