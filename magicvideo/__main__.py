"""`python -m magicvideo ...` is the `magicvideo` command."""
import sys

from .cli import main

sys.exit(main())
