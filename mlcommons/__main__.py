import sys

from mlcommons.cli import main

sys.exit(main())
