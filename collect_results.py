#!/usr/bin/env python3
"""Collect a run's results, verified and organised (see --help)."""
from globtim_hpc.venv import use_project_venv; use_project_venv()  # noqa: E702, I001
from globtim_hpc.cli.collect import main  # noqa: E402

raise SystemExit(main())
