"""Who schedules jobs: SLURM through a transport, or direct background processes."""
