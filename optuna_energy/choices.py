"""The names the command line offers, owned here so that ``optuna-energy --help`` lists them
without importing PyTorch or Optuna: the samplers (``config.SAMPLERS`` has one constructor for
each), the export formats (``export`` writes each), the poolers and the storage environment
variable."""

from __future__ import annotations

SAMPLER_NAMES = ("tpe", "auto", "nsga2", "random", "evolution", "gp")
"""``[study] sampler`` and ``--sampler`` values, in the order ``config.SAMPLERS`` builds them."""
EXPORT_FORMATS = ("pt2", "onnx", "state_dict", "torchscript")
"""``pt2``: PyTorch's current format (``torch.export.save``; load with ``torch.export.load(path)
.module()``), the default; ``onnx`` for other runtimes; ``state_dict`` with the architecture, for
``load_checkpoint``; ``torchscript``, deprecated by PyTorch in favour of ``pt2``."""
DEFAULT_EXPORT_FORMAT = "pt2"
POOLERS = ("none", "pgbouncer")
"""``[workers] pooler`` and ``launch --pooler``: ``pgbouncer`` runs one PgBouncer per node
(``store.pooler``)."""
STORAGE_ENV = "OPTUNA_ENERGY_STORAGE"
"""Environment variable holding the storage URL (every command's default, and how ``launch``
gives it to its workers, so that passwords stay out of ``ps`` output)."""
