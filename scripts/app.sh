#!/usr/bin/env bash
# Start the app from a fresh machine: installs the requirements, then serves the Streamlit app.
#
#   bash scripts/app.sh              # this machine only: http://127.0.0.1:8501
#   bash scripts/app.sh --classroom  # every network interface, so a class on the same network can use it
#
# Other arguments go to `streamlit run` (e.g. --server.port 8502). See the README's Security part
# for what anyone who can reach the app can do.
set -euo pipefail
cd "$(dirname "$0")/.."
address=127.0.0.1
args=()
for arg in "$@"; do
  if [ "$arg" = "--classroom" ]; then address=0.0.0.0; else args+=("$arg"); fi
done
python -m pip install --quiet --disable-pip-version-check -r requirements.txt
if [ "$address" = 0.0.0.0 ]; then
  echo "Serving on every interface: anyone who can reach port 8501 of this machine can use the app." >&2
fi
exec python -m streamlit run app.py --server.address "$address" "${args[@]+"${args[@]}"}"
