#!/usr/bin/env bash
# One entry point for a fresh machine: creates .venv/ when it is missing, installs the project
# into it (again only when setup.cfg changed), then runs what was asked.
#   bash run.sh serve [mlcommons serve options]   start the whole single-machine stack
#   bash run.sh test  [pytest options]            run the whole test suite
set -euo pipefail
cd "$(dirname "$0")"

python_bin=""
for candidate in "${PYTHON:-}" python3.11 python3 python; do
  if [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1 \
     && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
    python_bin=$candidate; break
  fi
done
[ -n "$python_bin" ] || { echo "run.sh: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }

[ -x .venv/bin/python ] || "$python_bin" -m venv .venv
stamp=.venv/.mlcommons-install-stamp
want=$(cat setup.cfg pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/mlcommons ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  # torch first, pinned: any requirement that admits a newer torch pulls a multi-GB CUDA build.
  .venv/bin/python -m pip install --quiet torch==2.13.0
  .venv/bin/python -m pip install --quiet -e '.[test]'
  echo "$want" > "$stamp"
fi

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
command=${1:-}; shift || true

# The models page's test drives a real browser: Debian's chromium. Where it is missing and this
# is a root shell with apt-get (a CI machine, a container), install it; elsewhere that test skips
# and says why. MLCOMMONS_NO_APT=1 leaves the system alone.
if [ "$command" = test ] && ! command -v chromium >/dev/null 2>&1 && [ -z "${MLCOMMONS_NO_APT:-}" ] \
   && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "run.sh: installing Debian's chromium for the models page's browser test (MLCOMMONS_NO_APT=1 skips this)" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1 \
    || echo "run.sh: could not install chromium; the browser test will skip" >&2
fi
case "$command" in
  serve) exec .venv/bin/mlcommons serve "$@" ;;
  test)  exec .venv/bin/python -m pytest "$@" ;;
  *) echo "usage: bash run.sh serve [options] | bash run.sh test [pytest options]" >&2; exit 2 ;;
esac
