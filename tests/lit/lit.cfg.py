"""lit configuration for hpim's IR and assembly tests.

Tools come from the environment running lit (the venv that `pytest` runs in), so the suite
tests the installed `hpim`, `hpim-opt` and `filecheck`.
"""

import os
import shutil
import sys

import lit.formats

config.name = "hpim"
config.test_format = lit.formats.ShTest(execute_external=False)
config.suffixes = [".mlir", ".hpimasm", ".test"]
config.excludes = ["Inputs", "Output", "lit.cfg.py"]
config.test_source_root = os.path.dirname(__file__)

# Put the interpreter's bin directory first so `hpim`, `hpim-opt` and `filecheck` are the ones
# installed beside the Python that runs the suite.
bin_dir = os.path.dirname(sys.executable)
config.environment["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])
for name in ("HOME", "TMPDIR", "PYTHONPATH", "HPIM_CACHE_DIR"):
    if name in os.environ:
        config.environment[name] = os.environ[name]
config.substitutions.append(("%python", sys.executable))
config.substitutions.append(("%inputs", os.path.join(config.test_source_root, "Inputs")))
if shutil.which("filecheck", path=config.environment["PATH"]) is None:
    lit_config.fatal("filecheck is not installed beside this Python: pip install '.[test]'")
