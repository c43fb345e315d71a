"""doit-stages: `doit list` shows the commands. Which stages.ini: $STAGES_INI, else ./stages.ini.
A project's own dodo.py is the same two lines (the package installs as doit_stages; see README)."""
from doit_stages.dodo import load

globals().update(load())
