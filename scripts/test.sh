#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs, then lint + tests.
# MNIST: set MNIST_DIR to a folder with the four .gz files, or they are downloaded (hash-checked).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -r requirements-dev.txt
# Headless Chromium for the browser tests (Debian package; Playwright's own download is not used).
if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
fi
ruff check .
ruff format --check .
mypy  # over mnist_net/ (pyproject.toml)
python -m pytest -q "$@"
