"""``python -m rlhf_eval`` → the rlhf-eval command (rlhf_eval.cli.main)."""
import sys

from .cli import main

sys.exit(main())
