"""doit-stages: `doit list` shows the commands. Which stages.ini: $STAGES_INI, else ./stages.ini."""
import sys

from tasks.doit_tasks import creators, doit_config, hold_project_lock, ini_path, load_or_exit, refuse_bare_groups

refuse_bare_groups(sys.argv)
_config = load_or_exit(ini_path())  # a bad config stops here: one line, nothing touched
DOIT_CONFIG = doit_config(_config.path)
_project_lock = hold_project_lock(_config.path)
globals().update(creators(_config))
