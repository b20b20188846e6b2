"""Where commands run: a Transport runs argv and moves bytes on one target host."""
