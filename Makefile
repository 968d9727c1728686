.PHONY: dev test lint format typecheck bench

# The main job: API and one worker on the embedded defaults, with a working conversation.
dev:
	@scripts/install.sh offline
	@scripts/services.sh dev
	.venv/bin/bobbin dev

# The whole test suite (what CI runs).
test:
	@scripts/test.sh

lint:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

format:
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .

typecheck:
	.venv/bin/mypy shared workers api cli

bench:
	.venv/bin/python -m bench
