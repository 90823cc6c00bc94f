# One command runs every check: `make check`. CI runs exactly that.
# Every target installs what it needs first, so each works on a fresh clone.

UV ?= uv
PYTEST_ARGS ?=

.PHONY: setup run check format format-check lint typecheck imports test bench chaos

setup:
	@command -v $(UV) >/dev/null 2>&1 || python3 -m pip install --quiet "uv==0.13.9"
	$(UV) sync --frozen --all-extras

# `tether demo` exits 0 whenever its run ends in a typed status, even one the small local
# model earns by misbehaving; it asks at the terminal before deleting (`--yes` approves).
run: setup
	.venv/bin/tether demo

check: setup format-check lint typecheck imports test

format:
	$(UV) run --frozen ruff format .

format-check:
	$(UV) run --frozen ruff format --check .

lint:
	$(UV) run --frozen ruff check .

typecheck:
	$(UV) run --frozen mypy

imports:
	$(UV) run --frozen lint-imports

# pytest exits 5 when it collects no tests; that must fail the build, never pass it.
test:
	@$(UV) run --frozen pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi; \
	exit $$rc

bench: setup
	$(UV) run --frozen python bench/loop_overhead.py

# The big crash tier by hand: `make chaos N=1000` (CI runs 100 runs in `make check`).
N ?= 1000
chaos: setup
	CHAOS_RUNS=$(N) $(UV) run --frozen pytest tests/crash -q -s -p no:cacheprovider
