"""End-to-end tests in a real browser (Playwright and Debian's Chromium)."""
