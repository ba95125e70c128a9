"""Inspection tools on top of a running system or a module's declarations: ``trace`` (one
correlation id's timeline), ``graph`` (who sends and listens to what), and the module loader."""
