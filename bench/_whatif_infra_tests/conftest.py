"""What-if for bench_deploy.py --what-if: the real infra-tests/conftest.py (hosts, ssh config, fixtures),
loaded as it is, beside a batched copy of its checks. Not the tool's verify."""
import runpy
from pathlib import Path

_real = runpy.run_path(str(Path(__file__).resolve().parents[2] / "infra-tests" / "conftest.py"))
globals().update({k: v for k, v in _real.items() if not k.startswith("__")})
