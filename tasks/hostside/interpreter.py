# steps/facts.py INTERPRETER: run as `python3 -I -S -c INTERPRETER` by the python3 a host builds release venvs
# with; prints PEP 508's marker environment and the C library as one JSON line (facts.parse_interpreter).
import json
import os
import platform
import sys

i = sys.implementation
v = i.version
iv = "%d.%d.%d" % (v.major, v.minor, v.micro)
if v.releaselevel != "final":
    iv += v.releaselevel[0] + str(v.serial)
try:
    libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
except (ValueError, OSError, AttributeError):
    libc = ""
print(json.dumps({"implementation_name": i.name, "implementation_version": iv, "os_name": os.name,
    "platform_machine": platform.machine(), "platform_release": platform.release(),
    "platform_system": platform.system(), "platform_version": platform.version(),
    "python_full_version": platform.python_version(),
    "platform_python_implementation": platform.python_implementation(),
    "python_version": "%d.%d" % sys.version_info[:2], "sys_platform": sys.platform, "libc": libc},
    sort_keys=True))
