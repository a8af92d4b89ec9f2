import sys

from dainr.cli import main

sys.exit(main())
