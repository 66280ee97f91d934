import sys

from nasforge.cli import main

sys.exit(main())
