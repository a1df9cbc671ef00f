"""setup.py: builds kiln's Python extension with CMake (cmake/python.cmake), for pip.

The extension is the CMake target kiln_python (python/src/*.c linked with libkiln); this
file configures the repository one folder up in a build folder of its own
(build/python-pip, or $KILN_PIP_BUILD_DIR), builds that target, and copies the result into
the wheel next to kiln/*.py. No second build system: CMake stays the only one."""
import os
import pathlib
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        build = pathlib.Path(os.environ.get("KILN_PIP_BUILD_DIR", ROOT / "build" / "python-pip"))
        jobs = os.environ.get("KILN_PIP_JOBS", "2")
        subprocess.check_call(["cmake", "-S", str(ROOT), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                               f"-DPython3_EXECUTABLE={sys.executable}"])
        subprocess.check_call(["cmake", "--build", str(build), "-j", jobs, "--target", "kiln_python"])
        built = list((build / "python" / "kiln").glob("_kiln*.so"))
        if len(built) != 1:
            raise RuntimeError(f"expected one _kiln*.so in {build / 'python' / 'kiln'}, found {built}")
        dest = pathlib.Path(self.get_ext_fullpath(ext.name))
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(built[0], dest)


setup(ext_modules=[Extension("kiln._kiln", sources=[])], cmdclass={"build_ext": CMakeBuild})
