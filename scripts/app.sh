#!/usr/bin/env bash
# Start the app from a fresh machine: installs the requirements, then opens the Streamlit app.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --disable-pip-version-check -r requirements.txt
exec python -m streamlit run app.py "$@"
