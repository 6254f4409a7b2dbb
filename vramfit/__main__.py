import sys

from vramfit.cli.main import main

sys.exit(main())
