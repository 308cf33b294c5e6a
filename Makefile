# facelab: two commands. `make run` sets up and opens the app on the bundled sample;
# `make test` sets up (venv, package, Debian's Chromium) and runs every test.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PORT   ?= 8501
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test screenshots setup chromium clean

run: $(STAMP)
	$(PY) -m facelab sample
	$(PY) -m streamlit run streamlit_app.py --server.port $(PORT)

test: $(STAMP) chromium
	$(PY) -m pytest $(PYTEST_ARGS)

# The README's page screenshots (docs/screenshots/), from the browser test that opens every page.
screenshots: $(STAMP) chromium
	FACELAB_SCREENSHOTS=1 $(PY) -m pytest -q tests/test_browser_pages.py

setup: $(STAMP)

# torch is pinned and installed first: an unpinned torch would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

# Browser tests use Debian's Chromium (never `playwright install`, which downloads a browser).
chromium:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }

clean:
	rm -rf $(VENV)
