"""Everything is in pyproject.toml except this: the wheel carries template.yaml and the state machine
definitions it names, so that an installed ``polyv-retriever run`` builds its local stack from the same
template as ``sam deploy`` (found by ``polyv_retriever.local_stack.template``), from any directory."""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

#: Copied into polyv_retriever/local_stack/deployment/, keeping their paths relative to template.yaml.
DEPLOYMENT_FILES = ["template.yaml", "infra/statemachine"]


class BuildPyWithDeployment(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install reads the checkout itself
            return
        target = Path(self.build_lib, "polyv_retriever", "local_stack", "deployment")
        for name in DEPLOYMENT_FILES:
            source, destination = Path(name), target / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, destination, dirs_exist_ok=True)
            else:
                shutil.copy2(source, destination)


setup(cmdclass={"build_py": BuildPyWithDeployment})
