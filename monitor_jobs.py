#!/usr/bin/env python3
"""Show the state of submitted jobs (see --help)."""
from globtim_hpc.venv import use_project_venv; use_project_venv()  # noqa: E702, I001
from globtim_hpc.cli.monitor import main  # noqa: E402

raise SystemExit(main())
