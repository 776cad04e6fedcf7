import sys

from hsmsvc.cli import main

sys.exit(main())
