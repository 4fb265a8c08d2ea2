"""Measuring a model: the inference protocol and metered windows (``measure``) and
``EnergyMonitor`` for any module and inputs (``monitor``). The hardware itself (meters, devices,
GPU sharing) lives in ``optuna_energy.host``.
"""
