"""doit-stages: `doit list` shows the commands. Which stages.ini: $STAGES_INI, else ./stages.ini.
A project's own dodo.py is this same line (the package installs as doit_stages; see README)."""
from doit_stages.dodo import *  # noqa: F403  (DOIT_CONFIG and the task_* creators)
