import sys

from shears.cli import main

sys.exit(main())
