#!/usr/bin/env python
"""Seed-compatible entry point of panelsynth.

Usage (inside a workspace):
    python run_data_gen_pipeline.py wave_num model model_dir_name API_KEY [--yes] [--resume]

e.g. python run_data_gen_pipeline.py 1 anthropic/claude-sonnet-4-20250514 claude-sonnet-4 $KEY
     python run_data_gen_pipeline.py 1 local/smollm2 smollm2 none

Settings (n_examples, n_outputs, n_batches, seed, mode) are read from panelsynth.toml.
"""

import os
import sys

from panelsynth.seed_compat import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], script_dir=os.path.dirname(os.path.abspath(__file__))))
