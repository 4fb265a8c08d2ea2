"""EvolutionSampler on a conditional space of one's own: declared blocks are inherited whole."""

from __future__ import annotations

import optuna
import pytest

from optuna_energy.samplers import PARENTS_ATTR, EvolutionSampler

STAGES = 3


def stage_block(name: str) -> str:
    """A user's declaration: the genes of ``stageN_...`` are one block (a ResNet stage)."""
    return name.split("_", 1)[0] if name.startswith("stage") else name


def resnet_like(trial: optuna.Trial) -> tuple[float, float]:
    """A variable-depth ResNet-like space: 1-3 stages, each with its own depth, width and kernel."""
    size = 0.0
    score = 0.0
    for stage in range(trial.suggest_int("stages", 1, STAGES)):
        blocks = trial.suggest_int(f"stage{stage}_blocks", 1, 4)
        width = trial.suggest_categorical(f"stage{stage}_width", [16, 32, 64, 128])
        kernel = trial.suggest_categorical(f"stage{stage}_kernel", [1, 3, 5])
        ratio = trial.suggest_float(f"stage{stage}_ratio", 0.25, 4.0, log=True)
        size += blocks * width * kernel * kernel * ratio
        score += blocks * kernel / (1 + abs(ratio - 1))
    return score, size


def stage_of(params: dict, stage: int) -> dict:
    return {name: value for name, value in params.items() if name.startswith(f"stage{stage}_")}


def children(block_of) -> list[tuple[optuna.trial.FrozenTrial, list[optuna.trial.FrozenTrial]]]:
    """Bred trials with their parents, crossover always on and no mutation, so every gene of a
    child comes from a parent (or, where the chosen parent lacks its stage, is drawn fresh)."""
    sampler = EvolutionSampler(population_size=6, crossover_rate=1.0, slot_toggle_rate=0.0,
                               type_change_rate=0.0, gene_mutation_rate=0.0, seed=3,
                               **({} if block_of is None else {"block_of": block_of}))
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    study.optimize(resnet_like, n_trials=60)
    trials = {trial.number: trial for trial in study.trials}
    return [(trial, [trials[number] for number in trial.user_attrs[PARENTS_ATTR]])
            for trial in study.trials if trial.user_attrs[PARENTS_ATTR]]


def test_declared_stage_blocks_are_inherited_whole():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    checked = 0
    for child, parents in children(stage_block):
        for stage in range(STAGES):
            present = [stage_of(parent.params, stage) for parent in parents if stage_of(parent.params, stage)]
            if len(present) == 2 and present[0] != present[1] and stage_of(child.params, stage):
                # The child's stage is one parent's, whole, or (that parent lacking it) fresh:
                # it never mixes the two parents' genes.
                assert stage_of(child.params, stage) in present
                checked += 1
    assert checked >= 10


def test_without_the_declaration_stage_genes_mix():
    """The default rule (``sNN_``, else one block per parameter) crosses a stage's genes over
    one by one, so some child has a stage neither parent has: what the declaration prevents."""
    mixed = 0
    for child, parents in children(None):
        for stage in range(STAGES):
            present = [stage_of(parent.params, stage) for parent in parents]
            genes = stage_of(child.params, stage)
            if all(present) and len(genes) == 4 and genes not in present and set(genes.items()) <= set(
                    present[0].items()) | set(present[1].items()):
                mixed += 1
    assert mixed > 0


@pytest.mark.parametrize("block_of", [None, stage_block])
def test_the_space_runs_to_the_end(block_of):
    assert len(children(block_of)) == 60 - 6
