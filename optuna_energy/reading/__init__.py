"""Reading a finished or running study: fronts, Table I, figures, the report folder, the dashboard.

Nothing here writes a trial. ``analysis`` (fronts, highlighted models, payback, hypervolume) →
``report`` (Table I, the payback and savings sentences; ``savings`` counts what early stopping
saved) → ``plots`` (Fig. 1, Fig. 2, hypervolume) → ``report_files`` (the folder) and
``dashboard`` (optuna-dashboard's note and artifacts).
"""
