"""optuna-energy's ``EvolutionSampler``: the code lives in the installed optuna-energy."""

try:
    from optuna_energy.samplers import EvolutionSampler
except ModuleNotFoundError as error:
    if error.name != "optuna_energy":
        raise
    message = "EvolutionSampler needs optuna-energy: pip install optuna-energy"
    raise ModuleNotFoundError(message) from error


__all__ = ["EvolutionSampler"]
