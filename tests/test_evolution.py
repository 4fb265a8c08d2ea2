"""The evolutionary sampler: block-preserving crossover, bounded mutation, parents, workers, seeds.

The studies here use the real 32-slot search space with a cheap, deterministic objective
(parameter count and MACs from ``profile``, no training), so that a hundred trials take seconds
and runs are exactly repeatable.
"""

from __future__ import annotations

import multiprocessing
import re
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.distributions import (
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState

from optuna_energy import ConfigError, create_sampler, load_config, profile
from optuna_energy.config import SpaceSection, TrainingSection
from optuna_energy.model.space import (
    sample_architecture,
    sample_training,
    slot_of,
    slot_prefix,
)
from optuna_energy.samplers import PARENTS_ATTR, EvolutionSampler
from optuna_energy.samplers._genome import Genome, block_of
from optuna_energy.samplers._selection import ElitePopulation
from optuna_energy.samplers._variation import (
    VariationRates,
    crossover,
    fit_to,
    mutate,
    perturb,
)
from optuna_energy.workers import run_worker
from tests.helpers import tiny_config

INPUT_SHAPE = (1, 8, 8)
DIRECTIONS = ["maximize", "minimize"]
optuna.logging.set_verbosity(optuna.logging.WARNING)


def architecture_objective(trial: optuna.Trial) -> tuple[float, float]:
    """Reward convolutional width and depth, penalise parameters: a deterministic trade-off."""
    training = sample_training(trial, TrainingSection())
    spec = sample_architecture(trial, SpaceSection(), INPUT_SHAPE).spec
    costs = profile(spec, INPUT_SHAPE, 10)
    score = sum(layer.get("out_channels", 0) for layer in spec) + np.log10(training.learning_rate)
    return float(score), float(costs.params)


def random_genomes(count: int, seed: int) -> list[Genome]:
    """Genomes of real trials drawn at random from the search space."""
    study = optuna.create_study(directions=DIRECTIONS, sampler=optuna.samplers.RandomSampler(seed=seed))
    study.optimize(architecture_objective, n_trials=count)
    return [Genome.of(trial.params, trial.distributions) for trial in study.trials]


def evolve(seed: int, n_trials: int = 60, **rates: float) -> optuna.Study:
    study = optuna.create_study(directions=DIRECTIONS,
                                sampler=EvolutionSampler(seed=seed, population_size=10, **rates))
    study.optimize(architecture_objective, n_trials=n_trials)
    return study


def test_crossover_takes_every_block_whole_from_one_parent() -> None:
    rng = np.random.default_rng(0)
    genomes = random_genomes(12, seed=1)
    mixed_children = 0
    for first, second in zip(genomes[::2], genomes[1::2]):
        child = crossover(first, second, rng)
        sources = set()
        for block in set(first.blocks()) | set(second.blocks()):
            from_first = child.block(block) == first.block(block)
            from_second = child.block(block) == second.block(block)
            assert from_first or from_second, f"block {block} mixes genes of both parents"
            sources.add("first" if from_first and not from_second else
                        "second" if from_second and not from_first else "either")
            for name in child.block(block):
                parent = first if name in first.values and from_first else second
                assert child.distributions[name] == parent.distributions[name]
        mixed_children += {"first", "second"} <= sources
    assert mixed_children >= 4  # uniform crossover really mixes the two parents


def test_training_genes_form_one_block_and_slots_one_each() -> None:
    assert block_of("s03_conv_kh") == block_of("s03_on") == "s03"
    assert block_of("s17_type") == "s17"
    assert block_of("train_lr") == block_of("train_optimizer") == "train"
    assert block_of("x") == "x"


def test_the_sampler_reads_slot_names_as_the_space_writes_them() -> None:
    """The sampler parses the naming itself (importing the space would import torch)."""
    blocks = {block_of(slot_prefix(slot) + "on") for slot in range(100)}
    assert len(blocks) == 100
    assert all(slot_of(block + "_") is not None for block in blocks)


def test_mutation_keeps_every_gene_inside_its_distribution() -> None:
    rng = np.random.default_rng(0)
    genomes = random_genomes(10, seed=2)
    wild = VariationRates(crossover_rate=1.0, slot_toggle_rate=0.3, type_change_rate=0.5,
                          gene_mutation_rate=1.0, perturbation_scale=1.0)
    changed = 0
    for first, second in zip(genomes, genomes[1:]):
        child = Genome.of(first.values, first.distributions)
        mutate(child, second, wild, rng)
        for name, value in child.values.items():
            distribution = child.distributions[name]
            assert distribution._contains(distribution.to_internal_repr(value)), (name, value)
        changed += child.values != first.values
    assert changed == len(genomes) - 1


def test_slot_toggle_and_type_change_keep_a_slot_consistent() -> None:
    rng = np.random.default_rng(3)
    genomes = random_genomes(10, seed=3)
    rates = VariationRates(crossover_rate=1.0, slot_toggle_rate=0.5, type_change_rate=1.0,
                           gene_mutation_rate=0.0, perturbation_scale=0.1)
    for first, second in zip(genomes, genomes[1:]):
        child = Genome.of(first.values, first.distributions)
        mutate(child, second, rates, rng)
        for block, names in child.blocks().items():
            if block == "train":
                continue
            kind = child.values.get(f"{block}_type")
            if not child.values[f"{block}_on"]:
                assert names == [f"{block}_on"], "a switched-off slot keeps no genes"
            for name in names:
                if name not in (f"{block}_on", f"{block}_type"):
                    assert name.startswith(f"{block}_{kind}_"), f"{name} survives a type change"


def test_perturbation_moves_numbers_a_short_way_inside_their_range() -> None:
    rng = np.random.default_rng(0)
    log_int = IntDistribution(8, 64, log=True)
    steps = [perturb(16, log_int, rng, scale=0.1) for _ in range(200)]
    assert all(8 <= value <= 64 and isinstance(value, int) for value in steps)
    assert 8 < np.median(steps) < 32 and len(set(steps)) > 3
    stepped = FloatDistribution(0.0, 1.0, step=0.25)
    assert {perturb(0.5, stepped, rng, scale=0.5) for _ in range(100)} <= {0.0, 0.25, 0.5, 0.75, 1.0}
    choice = CategoricalDistribution(["relu", "gelu", "tanh"])
    assert all(perturb("relu", choice, rng, scale=0.1) != "relu" for _ in range(20))


def test_values_are_clipped_to_the_narrower_distribution_the_objective_asks_for() -> None:
    assert fit_to(7, IntDistribution(1, 3, log=True)) == 3
    assert fit_to(0, IntDistribution(2, 8, step=2)) == 2
    assert fit_to(0.9, FloatDistribution(0.0, 0.6)) == 0.6
    assert fit_to("pool", CategoricalDistribution(["conv", "dropout"])) is None
    assert fit_to("relu", IntDistribution(1, 3)) is None


def test_child_genes_reach_the_objective_clipped() -> None:
    """A parent's 7-wide kernel, asked for on a 3-wide map, arrives as 3."""
    study = optuna.create_study(directions=DIRECTIONS,
                                sampler=EvolutionSampler(seed=0, population_size=2,
                                                         gene_mutation_rate=0.0, slot_toggle_rate=0.0,
                                                         crossover_rate=0.0))
    for _ in range(2):
        study.enqueue_trial({"s00_on": True, "s00_type": "conv", "s00_conv_kh": 7})
    wide = IntDistribution(1, 21, log=True)
    study.optimize(lambda t: (t.suggest_categorical("s00_on", [False, True]) * 1.0,
                              t.suggest_int("s00_conv_kh", 1, 21, log=True) * 1.0), n_trials=2)
    child = study.ask()
    assert child.suggest_categorical("s00_on", [False, True]) is True
    assert child.suggest_int("s00_conv_kh", 1, 3, log=True) == 3
    assert study.trials[0].distributions["s00_conv_kh"] == wide


def test_every_trial_records_its_parents_and_children_inherit_conditional_genes() -> None:
    study = evolve(seed=0, gene_mutation_rate=0.0)  # no perturbation: every gene is inherited or new
    trials = study.get_trials(deepcopy=False)
    inherited = fresh = 0
    for trial in trials:
        parents = trial.user_attrs[PARENTS_ATTR]
        if trial.number < 10:
            assert parents == []
            continue
        assert len(parents) == 2 and all(p < trial.number for p in parents)
        parent_params = [trials[p].params for p in parents]
        for name, value in trial.params.items():
            if "_type" in name or name.endswith("_on") or name.startswith("train_"):
                continue  # count only the conditional hyperparameters of a layer type
            if any(params.get(name) == value for params in parent_params):
                inherited += 1
            else:
                fresh += 1
    # Random sampling would match a parent's float or wide-int gene only by chance; here only
    # slots switched on, new types and ranges narrowed by the shape draw genes fresh.
    assert inherited > 3 * fresh


def test_evolution_improves_on_its_random_first_population() -> None:
    study = evolve(seed=1, n_trials=80)
    scores = [trial.values[0] for trial in study.trials]
    assert max(scores[40:]) > max(scores[:10])


def test_enqueued_seeds_are_used_as_given_without_parents() -> None:
    study = optuna.create_study(directions=DIRECTIONS, sampler=EvolutionSampler(seed=0))
    study.enqueue_trial({"s00_on": True, "s00_type": "conv", "train_optimizer": "sgd"})
    study.optimize(architecture_objective, n_trials=1)
    trial = study.trials[0]
    assert trial.params["s00_type"] == "conv" and trial.params["train_optimizer"] == "sgd"
    assert trial.user_attrs[PARENTS_ATTR] == []


def test_a_seed_makes_runs_reproducible() -> None:
    first, second, other = evolve(seed=7, n_trials=40), evolve(seed=7, n_trials=40), evolve(seed=8, n_trials=40)
    assert [t.params for t in first.trials] == [t.params for t in second.trials]
    assert [t.user_attrs[PARENTS_ATTR] for t in first.trials] == [t.user_attrs[PARENTS_ATTR] for t in second.trials]
    assert [t.params for t in first.trials] != [t.params for t in other.trials]


def made_trial(number: int, values: list[float], violation: float = 0.0) -> optuna.trial.FrozenTrial:
    trial = optuna.trial.create_trial(values=values, system_attrs={"constraints:energy": violation})
    trial.number = number
    return trial


ACCURACY_AND_PARAMS = [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]


@pytest.mark.parametrize("selection", ["hypervolume", "crowding"])
def test_feasible_trials_survive_before_infeasible_ones(selection: str) -> None:
    population = ElitePopulation(2, ACCURACY_AND_PARAMS, selection=selection)
    dominant_but_infeasible = made_trial(0, [1.0, 1.0], violation=0.5)
    population.update([dominant_but_infeasible, made_trial(1, [0.2, 5.0], -1.0),
                       made_trial(2, [0.5, 9.0])])
    assert sorted(t.number for t in population.members) == [1, 2]
    population.update([made_trial(3, [0.9, 1.0], -0.1)])  # dominates both
    assert len(population.members) == 2 and population.members[1].number == 3


def test_hypervolume_survival_drops_a_chance_level_trial_that_crowding_keeps() -> None:
    """Barely cheaper than a good network, a chance-level one adds almost no hypervolume."""
    trials = {"accurate": [0.97, 1e5], "mid": [0.95, 1e4], "frugal": [0.93, 100], "chance": [0.10, 90]}
    survivors = {}
    for selection in ("hypervolume", "crowding"):
        population = ElitePopulation(2, ACCURACY_AND_PARAMS, selection=selection)
        population.update([made_trial(i, values) for i, values in enumerate(trials.values())])
        survivors[selection] = {list(trials)[t.number] for t in population.members}
    assert survivors == {"hypervolume": {"mid", "frugal"}, "crowding": {"accurate", "chance"}}


def test_survival_treats_costs_within_their_spread_as_equal() -> None:
    """Trial 1 is faster than trial 0 only within the 20 % its windows spread over, and less
    accurate: beyond the noise trial 0 dominates it. By exact values both are on the front and
    trial 1 adds far more hypervolume."""
    def measured(number: int, accuracy: float, seconds: float, spread: float | None):
        trial = optuna.trial.create_trial(values=[accuracy, seconds], user_attrs=(
            {} if spread is None else {"inference_time_spread": spread}))
        trial.number = number
        return trial

    survivors = {}
    for spread in (None, 0.2):
        population = ElitePopulation(1, ACCURACY_AND_PARAMS,
                                     spread_attrs=["accuracy_spread", "inference_time_spread"])
        population.update([measured(0, 0.900, 1.0, spread), measured(1, 0.899, 0.85, spread),
                           measured(2, 0.5, 5.0, spread)])
        survivors[spread] = [t.number for t in population.members]
    assert survivors == {None: [1], 0.2: [0]}


def test_constraints_set_by_the_objective_steer_selection() -> None:
    def constrained(trial: optuna.Trial) -> tuple[float, float]:
        score, params = architecture_objective(trial)
        trial.set_constraint("params", params - 20_000)
        return score, params

    sampler = EvolutionSampler(seed=0, population_size=10)
    study = optuna.create_study(directions=DIRECTIONS, sampler=sampler)
    study.optimize(constrained, n_trials=60)
    feasible = [t.values[1] <= 20_000 for t in study.trials]
    assert sum(feasible[30:]) > sum(feasible[:30])


def _journal(path: Path) -> optuna.storages.JournalStorage:
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))


def _worker(path: Path, worker: int, n_trials: int) -> None:
    def tagged(trial: optuna.Trial) -> tuple[float, float]:
        trial.set_user_attr("worker", worker)
        return architecture_objective(trial)

    study = optuna.load_study(study_name="shared", storage=_journal(path),
                              sampler=EvolutionSampler(seed=worker, population_size=4))
    study.optimize(tagged, n_trials=n_trials)


def test_two_worker_processes_share_one_journal_storage(tmp_path: Path) -> None:
    path = tmp_path / "shared.log"
    optuna.create_study(study_name="shared", storage=_journal(path), directions=DIRECTIONS)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_worker, args=(path, worker, 12)) for worker in (1, 2)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=120)
        assert process.exitcode == 0
    trials = optuna.load_study(study_name="shared", storage=_journal(path)).trials
    assert len(trials) == 24
    assert sorted(t.number for t in trials) == list(range(24))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert {t.user_attrs["worker"] for t in trials} == {1, 2}
    bred = [t for t in trials if t.user_attrs[PARENTS_ATTR]]
    assert bred and all(set(t.user_attrs[PARENTS_ATTR]) < set(range(t.number)) for t in bred)


def test_a_worker_breeds_with_the_configured_population(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, learns=True, sampler="evolution", n_trials=6)
    config["evolution"] = {"population_size": 2}
    trials = run_worker(load_config(config)).trials
    parents = [trial.user_attrs[PARENTS_ATTR] for trial in trials]
    assert parents[:2] == [[], []]  # the first population: random
    # Then a child of two parents as soon as two trials have completed (a network may still
    # end PRUNED at chance, or diverge).
    for number in range(2, len(trials)):
        completed = sum(trial.state == TrialState.COMPLETE for trial in trials[:number])
        assert len(parents[number]) == (2 if completed >= 2 else 0), (number, completed, parents)
    assert any(parents[2:])


def test_config_selects_the_sampler_with_its_rates() -> None:
    config = load_config({"study": {"sampler": "evolution"},
                          "evolution": {"population_size": 8, "slot_toggle_rate": 0.1}})
    sampler = create_sampler(config.study.sampler, seed=0, evolution=config.evolution)
    assert isinstance(sampler, EvolutionSampler)
    assert sampler.settings.population_size == 8 and sampler.settings.slot_toggle_rate == 0.1


@pytest.mark.parametrize(("section", "message"), [
    ({"crossover_rate": 1.5}, "[evolution] crossover_rate must be between 0 and 1, got 1.5"),
    ({"population_size": 1}, "[evolution] population_size must be >= 2, got 1"),
    ({"selection": "pareto"}, "[evolution] selection is 'pareto'; allowed: hypervolume, crowding"),
    ({"population_size": 4, "tournament_size": 5}, "[evolution] tournament_size must be between 1"),
])
def test_bad_rates_are_one_line_errors(section: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config({"evolution": section})
    # The sampler checks its own arguments, in its own words: a plain ValueError, no "[evolution]".
    with pytest.raises(ValueError, match="^" + re.escape(message.removeprefix("[evolution] "))) as raised:
        EvolutionSampler(**section)
    assert not isinstance(raised.value, ConfigError)
