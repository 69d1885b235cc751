# The two set-up commands of the README. Both install what they need on a fresh machine.
#   make site   install everything and build the site into site/  (make serve: live preview)
#   make test   install everything (incl. Debian's chromium) and run the whole test suite
PYTHON ?= python3
PIP := $(PYTHON) -m pip
STAMP := .install-stamp

.PHONY: site serve test install browser lint

$(STAMP): pyproject.toml
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

site: install
	mikb build

serve: install
	mikb serve

browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium fonts-dejavu-core; }
	@$(PYTHON) -c "import playwright" 2>/dev/null || $(PIP) install -q playwright

lint: install
	ruff check .

test: install browser lint
	mikb check --strict
	$(PYTHON) -m pytest -q --durations=15
