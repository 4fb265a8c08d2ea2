import sys

from optuna_energy.cli import main

sys.exit(main())
