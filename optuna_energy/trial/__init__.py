"""One trial of the built-in search: costs first, training in rungs, the stop rule, the objective.

``objective`` is the pipeline; ``costs_first`` measures an untrained model against the study's
limits; ``early_stopping`` trains in rungs (``train``) and asks ``rungs`` whether to go on.
"""
