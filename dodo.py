"""doit-stages: `doit list` shows the commands. Which stages.ini: $STAGES_INI, else ./stages.ini."""
import sys

from tasks.doit_tasks import creators, doit_config, hold_project_lock, load_or_exit, refuse_bare_groups

refuse_bare_groups(sys.argv)
DOIT_CONFIG = doit_config()
_project_lock = hold_project_lock()
globals().update(creators(load_or_exit()))
