"""Tests that drive the page in a real browser (Debian chromium through Playwright)."""
