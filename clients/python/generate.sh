#!/usr/bin/env bash
# Generates the Python stubs from proto/ into src/sse_bridge_client/_gen
# (or into $1), with imports rewritten to live inside the package.
# Needs grpcio-tools==1.85.1 (pip install -e 'clients/python[dev]').
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
proto="$here/../../proto"
out="${1:-$here/src/sse_bridge_client/_gen}"
python="${PYTHON:-python3}"
# Make a relative path absolute before changing directory (without
# resolving symlinks: a venv's python is a symlink to the base interpreter).
case "$python" in
  /*) ;;
  */*) python="$(cd "$(dirname "$python")" && pwd)/$(basename "$python")" ;;
esac

rm -rf "$out"
mkdir -p "$out"
files=$(cd "$proto" && find . -name '*.proto' | sed 's|^\./||' | sort)
(cd "$proto" && "$python" -m grpc_tools.protoc -I . \
  --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" $files)

# Generated code imports by proto path (`from events.v1 import …`); make
# those imports package-relative so the stubs need no sys.path changes.
find "$out" -name '*.py' -o -name '*.pyi' | while read -r f; do
  sed -i -E 's/^from (events|ssebridge)\.v1 import/from sse_bridge_client._gen.\1.v1 import/' "$f"
done
find "$out" -type d | while read -r d; do
  [ -f "$d/__init__.py" ] || printf '' > "$d/__init__.py"
done
