"""Packaging beyond pyproject.toml: the top-level ``templates/`` folder goes into the wheel as
``app/templates``, where the dashboard looks for it once installed (see app/dashboard/templating.py).
"""

from pathlib import Path

from setuptools import find_packages, setup

TEMPLATE_DIRS = sorted(str(p.relative_to("templates")) for p in Path("templates").rglob("*") if p.is_dir())

setup(
    packages=[
        *find_packages(include=["app*"]),
        "app.templates",
        *(f"app.templates.{d.replace('/', '.')}" for d in TEMPLATE_DIRS),
    ],
    package_dir={
        "app.templates": "templates",
        **{f"app.templates.{d.replace('/', '.')}": f"templates/{d}" for d in TEMPLATE_DIRS},
    },
    package_data={
        "app.db": ["migrations/*.py", "migrations/*.mako", "migrations/versions/*.py"],
        "app.api": ["swagger_ui/*"],
        "app.dashboard": ["static/*", "locale/*/LC_MESSAGES/*.po"],
        "app.templates": ["*.html"],
        **{f"app.templates.{d.replace('/', '.')}": ["*.html"] for d in TEMPLATE_DIRS},
    },
)
