#!/usr/bin/env bash
# Generates the Python stubs from proto/ into src/sse_bridge_client/_gen
# (or into $1), with imports rewritten to live inside the package.
# Needs grpcio-tools==1.85.1 (clients/python[dev]); without PYTHON set it
# installs them into a venv under target/ when python3 lacks them.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
proto="$here/../../proto"
out="${1:-$here/src/sse_bridge_client/_gen}"
# PYTHON, if set, must already have grpc_tools; else python3 is used when it
# has them, or a venv under target/ (as scripts/test makes) gets them.
python="${PYTHON:-}"
if [ -z "$python" ]; then
  python=python3
  if ! "$python" -c 'import grpc_tools.protoc' 2>/dev/null; then
    venv="$here/../../target/test-tools/venv"
    echo "grpcio-tools not found: installing it into $venv" >&2
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -e "$here[dev]"
    python="$venv/bin/python"
  fi
fi
# Make a relative path absolute before changing directory (without
# resolving symlinks: a venv's python is a symlink to the base interpreter).
case "$python" in
  /*) ;;
  */*) python="$(cd "$(dirname "$python")" && pwd)/$(basename "$python")" ;;
esac
# Checked before anything is touched: the stubs in place stay as they are.
if ! "$python" -c 'import grpc_tools.protoc' 2>/dev/null; then
  echo "error: $python cannot import grpc_tools (grpcio-tools==1.85.1); nothing was changed." >&2
  echo "Run without PYTHON to install it into a venv under target/, or: $python -m pip install 'grpcio-tools==1.85.1'" >&2
  exit 1
fi

# Generated beside the target and swapped in only once complete.
new="$out.new.$$"
rm -rf "$new"
mkdir -p "$new"
trap 'rm -rf "$new"' EXIT
files=$(cd "$proto" && find . -name '*.proto' | sed 's|^\./||' | sort)
(cd "$proto" && "$python" -m grpc_tools.protoc -I . \
  --python_out="$new" --pyi_out="$new" --grpc_python_out="$new" $files)

# Generated code imports by proto path (`from events.v1 import …`); make
# those imports package-relative so the stubs need no sys.path changes.
find "$new" -name '*.py' -o -name '*.pyi' | while read -r f; do
  sed -i -E 's/^from (events|ssebridge)\.v1 import/from sse_bridge_client._gen.\1.v1 import/' "$f"
done
find "$new" -type d | while read -r d; do
  [ -f "$d/__init__.py" ] || printf '' > "$d/__init__.py"
done
rm -rf "$out"
mkdir -p "$(dirname "$out")"
mv "$new" "$out"
