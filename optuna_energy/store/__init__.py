"""What the study's storage holds and how workers share it: storage URLs, the trial record, and
the exact trial, epoch and joule budgets claimed across workers.
"""
