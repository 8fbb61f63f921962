#!/usr/bin/env bash
# Print the path of a real Python >= 3.12 interpreter, or fail loudly.
# Order: $PYTHON, python3.13 / python3.12 / python3 on PATH (each actually run, since pyenv
# shims exist but fail unless selected), then pyenv's installed versions, then /usr/bin.
set -u
want_major=3
want_minor=12

works() {
    "$1" -c "import sys; sys.exit(0 if sys.version_info >= ($want_major, $want_minor) else 1)" >/dev/null 2>&1
}

candidates=()
[ -n "${PYTHON:-}" ] && candidates+=("$PYTHON")
for name in python3.13 python3.12 python3; do
    command -v "$name" >/dev/null 2>&1 && candidates+=("$(command -v "$name")")
done
if command -v pyenv >/dev/null 2>&1; then
    root=$(pyenv root 2>/dev/null)
    for dir in $(ls -d "$root"/versions/3.1[2-9]* "$root"/versions/3.[2-9][0-9]* 2>/dev/null | sort -rV); do
        candidates+=("$dir/bin/python3")
    done
fi
for dir in $(ls -d "$HOME"/.pyenv/versions/3.1[2-9]* 2>/dev/null | sort -rV); do
    candidates+=("$dir/bin/python3")
done
candidates+=(/usr/local/bin/python3.13 /usr/local/bin/python3.12 /usr/bin/python3.13 /usr/bin/python3.12)

for candidate in "${candidates[@]}"; do
    if [ -x "$candidate" ] && works "$candidate"; then
        echo "$candidate"
        exit 0
    fi
done
echo "lupusbayes needs Python >= $want_major.$want_minor (PyMC 6 and ArviZ 1 do not support older versions)." >&2
echo "None found: tried ${candidates[*]:-nothing}." >&2
echo "Install Python 3.12 or 3.13, or point PYTHON=/path/to/python3.12 at one, then run make again." >&2
exit 1
