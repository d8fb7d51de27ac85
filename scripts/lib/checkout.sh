# Runs `main()` of a module of this checkout with the checkout's virtualenv: the orchestrator's
# packages are not installed into it (docs/architecture.md, "Packaging"), so the checkout goes
# first on sys.path, and -P keeps the caller's directory off it (nothing there named like our
# packages is imported instead). Sourced by the scripts/ commands: run_from_checkout NAME MODULE ARGS...
run_from_checkout() {
  local name="$1" module="$2"
  shift 2
  local root
  root="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)"
  local python="$root/.venv/bin/python"
  if [ ! -x "$python" ]; then
    echo "$name: no virtualenv at $root/.venv: run 'uv sync' in $root first" >&2
    exit 2
  fi
  exec "$python" -P -c '
import importlib, sys
sys.path.insert(0, sys.argv.pop(1))
module = importlib.import_module(sys.argv.pop(1))
sys.argv[0] = sys.argv.pop(1)
sys.exit(module.main())
' "$root" "$module" "$name" "$@"
}
