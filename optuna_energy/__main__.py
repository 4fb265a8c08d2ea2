import sys

from optuna_energy.entry import main

sys.exit(main())
