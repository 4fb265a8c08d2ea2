"""The machine the search runs on: devices (``devices``), energy meters (``meters``), several
workers on one GPU (``gpu_share``), processes (``processes``), signals (``interrupts``) and
writing files (``files``).
Imports nothing else of the package.
"""
