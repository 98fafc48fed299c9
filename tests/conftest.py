"""pytest configuration: makes ``tests/support.py`` importable from every test folder."""
