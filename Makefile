# The two commands of the README: `make run` and `make test`.
# Both do all set-up themselves on a fresh Debian machine.

.PHONY: run test setup

setup:
	bash dev/setup.sh

run: setup
	.venv/bin/ocps serve

test: setup
	bash dev/test.sh
