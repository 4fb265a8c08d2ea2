"""optuna-energy's ``EarlyStopper``: the code lives in the installed optuna-energy."""

try:
    from optuna_energy import EarlyStopper
except ModuleNotFoundError as error:
    if error.name != "optuna_energy":
        raise
    message = "EarlyStopper needs optuna-energy: pip install optuna-energy"
    raise ModuleNotFoundError(message) from error


__all__ = ["EarlyStopper"]
