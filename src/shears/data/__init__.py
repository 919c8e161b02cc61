"""Data: where it comes from (:mod:`~shears.data.spec`, ``DataSpec``), reading it
(:mod:`~shears.data.sources`, ``load_examples``), instruction records and reasoning-gym problems
(:mod:`~shears.data.tasks`), prompts, tokenisation and calibration text."""
