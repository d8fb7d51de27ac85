.PHONY: setup test lint bench demo

setup:
	uv sync

test:
	.ci/run

lint:
	uv run ruff check . && uv run ruff format --check .

bench:
	uv run python bench/run.py
