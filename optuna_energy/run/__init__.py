"""Running trials until the study has its budget: the loop, recovery of dead workers' trials and
the progress bar. One trial's own pipeline lives in ``optuna_energy.trial``.
"""
