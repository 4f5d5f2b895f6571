import sys

from coopbench.cli import main

sys.exit(main())
