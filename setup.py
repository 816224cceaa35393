"""Packages of the wheel: recbole_ext, dataset_atomic, and the repository's top-level
properties/ folder (model defaults, presets, search spaces) shipped as ``recbole_ext/properties``.
Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["recbole_ext*", "dataset_atomic*"]) + ["recbole_ext.properties"],
    package_dir={"recbole_ext.properties": "properties"},
    package_data={"recbole_ext.properties": ["*/*.yaml", "*/*.hyper"]},
)
