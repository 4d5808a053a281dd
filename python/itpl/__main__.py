import sys

from itpl.cli import main

sys.exit(main())
