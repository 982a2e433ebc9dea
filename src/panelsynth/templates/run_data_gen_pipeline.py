#!/usr/bin/env python
"""Seed-compatible entry point of panelsynth.

Usage (inside a workspace):
    python run_data_gen_pipeline.py wave_num model model_dir_name API_KEY [--yes] [--resume]

e.g. python run_data_gen_pipeline.py 1 anthropic/claude-sonnet-4-20250514 claude-sonnet-4 none
     python run_data_gen_pipeline.py 1 anthropic/claude-sonnet-4-20250514 claude-sonnet-4 @~/.key
     python run_data_gen_pipeline.py 1 local/smollm2 smollm2 none

API_KEY: none uses the provider's environment variable (ANTHROPIC_API_KEY, ...), @FILE reads the
key from a file; a key typed here is visible to other users of the machine (ps) and is warned about.

Settings (n_examples, n_outputs, n_batches, seed, mode) are read from panelsynth.toml.
"""

import os
import sys

from panelsynth.cli.seed import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], script_dir=os.path.dirname(os.path.abspath(__file__))))
