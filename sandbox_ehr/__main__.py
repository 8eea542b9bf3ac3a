import sys

from sandbox_ehr.cli import main

sys.exit(main())
