#!/usr/bin/env python3
"""Submit a GlobTim job to the cluster (see --help)."""
from globtim_hpc.venv import use_project_venv; use_project_venv()  # noqa: E702, I001
from globtim_hpc.cli.submit import main  # noqa: E402

raise SystemExit(main())
