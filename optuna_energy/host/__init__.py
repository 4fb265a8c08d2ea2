"""The machine the search runs on: devices (``devices``), energy meters (``meters``), several
workers on one GPU (``gpu_share``), processes (``processes``) and signals (``interrupts``).
Imports nothing else of the package.
"""
