"""Command-line front ends. Only this layer prints and turns errors into exit codes."""
