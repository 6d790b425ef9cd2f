#!/usr/bin/env bash
# Build the JupyterLab extension into nbtools/labextension/ against the JupyterLab that $PYTHON has.
# Used by `make labextension` and by Binder's postBuild; needs Node.js (npm), not the wheel's users.
set -euo pipefail
PYTHON="${PYTHON:-python}"
cd "$(dirname "$0")"
npm ci --no-audit --no-fund --loglevel=error
npx tsc
core="$("$PYTHON" -c 'import jupyterlab, os; print(os.path.join(os.path.dirname(jupyterlab.__file__), "staging"))')"
node node_modules/@jupyterlab/builder/lib/build-labextension.js --core-path "$core" .
