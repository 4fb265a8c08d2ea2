"""A synthetic study as large as the paper's, bulk-loaded into an Optuna RDB storage.

Every trial is a real sample of the configured space: a few hundred architectures and training
settings are sampled with the package's own space (``suggest_training``, ``sample_architecture``,
``record_architecture``) on real Optuna trials, and each synthetic trial copies one of them with
measurements drawn around what its size predicts (bigger models more accurate, slower and
hungrier). Trials end as the built-in objective ends them: completed with the four objectives and
the ``learned`` constraint (a few infeasible), stopped early after one epoch (PRUNED, with a stop
reason), or failed on purpose. Rows go into Optuna's tables in batches, through its own table
definitions, so 100,000 trials load in about a minute instead of hours through ``add_trial``.

    python bench/synthetic_study.py --trials 100000 --storage sqlite:///big.db
"""

from __future__ import annotations

import argparse
import datetime
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import optuna
import sqlalchemy
from optuna.distributions import distribution_to_json
from optuna.storages._rdb import models
from optuna.trial import TrialState

from optuna_energy.compose import record_architecture
from optuna_energy.config import load_config
from optuna_energy.model.space import sample_architecture, sample_training
from optuna_energy.samplers import _optuna_compat
from optuna_energy.study import create_or_load_study
from optuna_energy.trial.objective import LEARNED

TEMPLATES = 300
"""Distinct real samples of the space; synthetic trials vary their measurements."""
BATCH = 5_000
LEARNED_THRESHOLD = 0.1 + 1 / 360  # digits: chance plus one evaluation image
DIGITS_SHAPE, DIGITS_CLASSES = (1, 8, 8), 10


def _templates(config: Any, count: int, seed: int) -> list[tuple[dict[str, tuple[float, str]], dict[str, Any]]]:
    """``count`` real samples: parameters (internal value, distribution JSON) and the record the
    objective writes before training (architecture, summary, params, MACs)."""
    scratch = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    found = []
    for _ in range(count):
        trial = scratch.ask()
        sample_training(trial, config.training)
        record_architecture(trial, sample_architecture(trial, config.space, DIGITS_SHAPE),
                            DIGITS_SHAPE, DIGITS_CLASSES)
        frozen = scratch.tell(trial, state=TrialState.FAIL)
        params = {name: (frozen.distributions[name].to_internal_repr(value),
                         distribution_to_json(frozen.distributions[name]))
                  for name, value in frozen.params.items()}
        found.append((params, dict(frozen.user_attrs)))
    return found


def _trials(n_trials: int, templates: list, rng: np.random.Generator, start: int) -> Iterator[dict[str, Any]]:
    """One dict per trial: state, values, user and system attributes, params."""
    for number in range(start, start + n_trials):
        params, before = templates[int(rng.integers(len(templates)))]
        size = float(before["params"]) or 1.0
        accuracy = float(np.clip(0.1 + 0.88 * (1 - np.exp(-size / 3e4)) + rng.normal(0, 0.05), 0, 1))
        seconds = 1e-4 + size * 1e-9 * float(rng.lognormal(0, 0.3))
        joules = 1e-4 + size * 1e-10 * float(rng.lognormal(0, 0.3))
        epoch_joules = size * 1e-4 * float(rng.lognormal(0, 0.3))
        attrs = {**before, "device": "cpu", "eval_split": "validation (20% of load_digits)",
                 "precision": "fp32", "energy_source": "estimate", "inference_time_s": seconds,
                 "energy_per_inference_j": joules, "worker": f"node{number % 24}:{1000 + number % 6}"}
        draw = rng.random()
        if draw < 0.02:
            state, values = TrialState.FAIL, None
            attrs["failure_reason"] = "needs about 9 GB to train at batch 128"
        elif draw < 0.4:
            state, values = TrialState.PRUNED, None
            attrs.update(stop_reason="outranked at 1 epoch", epochs_trained=1, epochs_claimed=1,
                         train_energy_j=epoch_joules, rung_accuracies={"1": accuracy * 0.8})
        else:
            state, values = TrialState.COMPLETE, [accuracy, seconds, size, joules]
            violation = LEARNED_THRESHOLD - accuracy
            attrs.update(accuracy=accuracy, epochs_trained=6, epochs_claimed=6,
                         train_energy_j=6 * epoch_joules,
                         rung_accuracies={"1": accuracy * 0.8, "3": accuracy * 0.95, "6": accuracy},
                         constraints={LEARNED: violation}, feasible=violation <= 0)
        system = {f"constraints:{LEARNED}": LEARNED_THRESHOLD - accuracy} if values else {}
        yield {"number": number, "state": state, "values": values, "user": attrs, "system": system,
               "params": params}


def bulk_load(storage_url: str, n_trials: int, *, seed: int = 0, study_name: str = "digits") -> optuna.Study:
    """Create ``study_name`` in ``storage_url`` with the digits config and add ``n_trials``
    synthetic trials (see the module docstring); returns the study."""
    config = load_config({"study": {"storage": storage_url, "name": study_name}})
    study = create_or_load_study(config)
    rng = np.random.default_rng(seed)
    templates = _templates(config, TEMPLATES, seed)
    storage = _optuna_compat.storage_behind_cache(study)
    engine: sqlalchemy.Engine = storage.engine  # type: ignore[attr-defined]
    study_id = _optuna_compat.study_id(study)
    now = datetime.datetime(2026, 1, 1)
    with engine.begin() as connection:
        next_id = (connection.execute(sqlalchemy.select(sqlalchemy.func.max(models.TrialModel.trial_id)))
                   .scalar() or 0) + 1
        start = connection.execute(sqlalchemy.select(sqlalchemy.func.count()).where(
            models.TrialModel.study_id == study_id)).scalar() or 0
    trials = _trials(n_trials, templates, rng, start)
    while True:
        batch = [trial for _, trial in zip(range(BATCH), trials)]
        if not batch:
            return study
        rows: dict[str, list[dict[str, Any]]] = {"trials": [], "values": [], "user": [], "system": [],
                                                  "params": []}
        for offset, trial in enumerate(batch):
            trial_id = next_id + offset
            ended = trial["state"] != TrialState.RUNNING
            rows["trials"].append({"trial_id": trial_id, "number": trial["number"], "study_id": study_id,
                                   "state": trial["state"], "datetime_start": now,
                                   "datetime_complete": now if ended else None})
            rows["values"] += [{"trial_id": trial_id, "objective": index, "value": value,
                                "value_type": models.TrialValueModel.TrialValueType.FINITE}
                               for index, value in enumerate(trial["values"] or [])]
            rows["user"] += [{"trial_id": trial_id, "key": key, "value_json": json.dumps(value)}
                             for key, value in trial["user"].items()]
            rows["system"] += [{"trial_id": trial_id, "key": key, "value_json": json.dumps(value)}
                               for key, value in trial["system"].items()]
            rows["params"] += [{"trial_id": trial_id, "param_name": name, "param_value": value,
                                "distribution_json": distribution}
                               for name, (value, distribution) in trial["params"].items()]
        next_id += len(batch)
        with engine.begin() as connection:
            connection.execute(sqlalchemy.insert(models.TrialModel.__table__), rows["trials"])
            for key, table in (("values", models.TrialValueModel), ("user", models.TrialUserAttributeModel),
                               ("system", models.TrialSystemAttributeModel), ("params", models.TrialParamModel)):
                if rows[key]:
                    connection.execute(sqlalchemy.insert(table.__table__), rows[key])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, required=True)
    parser.add_argument("--storage", required=True, help="an RDB URL, e.g. sqlite:///big.db")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = bulk_load(args.storage, args.trials, seed=args.seed)
    print(f"added {args.trials} trials to study {study.study_name} at {args.storage}")


if __name__ == "__main__":
    main()
